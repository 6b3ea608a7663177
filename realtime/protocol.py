"""The WebSocket frames of docs/protocol.md as pydantic models, and the verb registry.

Every client frame is a request `{"id", "type", ...fields}`; its model is registered together
with the handler that answers it, and the discriminated union on `type` over the registered
models is the one place that knows every verb. A verb module only declares its request model
and decorates its handler:

    class Ping(Request):
        type: Literal["ping"]

    @verb(Ping)
    async def ping(ctx: Context, request: Ping) -> dict: ...

A handler returns the reply data (a dict or a model) or raises DomainError for an error reply.
The JSON Schema served at `GET /api/protocol.json` is generated from the same models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from domain.model import Role

MAX_ID_LENGTH = 128

ERROR_CODES = {
    "invalid": "the frame is not JSON, lacks id/type, names no known verb, or has bad fields",
    "unauthorized": "the token is missing, expired or forged (HTTP; on /ws: close 4401)",
    "forbidden": "the user's role may not use this verb, or may not do it to this target",
    "not_found": "no such id, also for another data owner's ids (rule 3)",
    "already_selected": "someone else holds the customer; with held_by and since",
    "user_has_selection": "the user already holds another customer; with customer_id",
    "selection_lost": "the selection token is no longer the live one: released or replaced",
    "invalid_transition": "the outcome is not valid from the customer's status",
    "rate_limited": "too many frames on this connection; slow down and send again",
    "do_not_call": "every number of the customer is on the do-not-call list: no call is placed",
    "internal": "the server failed; the request may be retried",
}

WireId = Annotated[
    str, Field(pattern=r"^[0-9]{1,18}$", description="an id: decimal digits as a string")
]


class Request(BaseModel):
    """A client frame. Fields a newer client adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="chosen by the client")
    type: str


class ReplyError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="one of the error codes of docs/protocol.md")
    message: str


class OkReply(BaseModel):
    type: Literal["reply"] = "reply"
    id: str | None
    ok: Literal[True] = True
    data: dict[str, Any]


class ErrorReply(BaseModel):
    type: Literal["reply"] = "reply"
    id: str | None = Field(description="the request's id; null when it could not be read")
    ok: Literal[False] = False
    error: ReplyError


class Event(BaseModel):
    type: Literal["event"] = "event"
    seq: int = Field(ge=0, description="rises by one per user across its connections")
    event: str
    data: dict[str, Any]


ServerFrame = Annotated[OkReply | ErrorReply | Event, Field(union_mode="left_to_right")]


# Events ---------------------------------------------------------------------------------------

EVENTS: dict[str, type[BaseModel]] = {}
"""Event name -> the model of its data, for the schema and the docs."""

M = TypeVar("M", bound=BaseModel)


def event(name: str) -> Callable[[type[M]], type[M]]:
    """Register the data model of an event."""

    def register(model: type[M]) -> type[M]:
        if name in EVENTS:
            raise ValueError(f"event {name!r} registered twice")
        EVENTS[name] = model
        return model

    return register


# Verbs ----------------------------------------------------------------------------------------

Handler = Callable[[Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Verb:
    name: str
    request: type[Request]
    handler: Handler
    roles: frozenset[Role] | None
    """None: every role."""


class Registry:
    """Verb name -> (request model, handler, roles); parses frames into request models."""

    def __init__(self) -> None:
        self.verbs: dict[str, Verb] = {}
        self._adapter: TypeAdapter[Any] | None = None

    def verb(
        self, request: type[Request], *, roles: tuple[Role, ...] | None = None
    ) -> Callable[[Handler], Handler]:
        name = verb_name(request)

        def register(handler: Handler) -> Handler:
            if name in self.verbs:
                raise ValueError(f"verb {name!r} registered twice")
            self.verbs[name] = Verb(name, request, handler, frozenset(roles) if roles else None)
            self._adapter = None
            return handler

        return register

    @property
    def adapter(self) -> TypeAdapter[Any]:
        if self._adapter is None:
            models = tuple(v.request for v in self.verbs.values())
            if len(models) == 1:
                self._adapter = TypeAdapter(models[0])
            else:
                union = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
                self._adapter = TypeAdapter(union)
        return self._adapter

    def parse(self, data: Any) -> Request:
        """The request model of a decoded frame; ValidationError when it is not one."""
        return self.adapter.validate_python(data)

    def client_schema(self) -> dict[str, Any]:
        return self.adapter.json_schema()


def verb_name(request: type[Request]) -> str:
    (name,) = get_args(request.model_fields["type"].annotation)
    return name


REGISTRY = Registry()
verb = REGISTRY.verb


def validation_fields(exc: ValidationError) -> list[dict[str, str]]:
    """The bad fields of a frame, as `[{"field", "message"}]` for an `invalid` reply."""
    return [
        {"field": ".".join(map(str, err["loc"])), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def protocol_schema() -> dict[str, Any]:
    """`GET /api/protocol.json`: client frames, server frames, event data and error codes."""
    return {
        "client": REGISTRY.client_schema(),
        "server": TypeAdapter(ServerFrame).json_schema(),
        "verbs": {
            name: {
                "roles": sorted(v.roles) if v.roles else [r.value for r in Role],
                "doc": (v.handler.__doc__ or "").strip(),
            }
            for name, v in sorted(REGISTRY.verbs.items())
        },
        "events": {name: model.model_json_schema() for name, model in sorted(EVENTS.items())},
        "errors": ERROR_CODES,
        "close_codes": CLOSE_CODES,
    }


CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_RESTART = 1012

CLOSE_CODES = {
    str(CLOSE_UNAUTHORIZED): "missing, expired or forged token: log in again",
    str(CLOSE_FORBIDDEN_ORIGIN): "the browser Origin is not allowed",
    str(CLOSE_TOO_SLOW): "the client read too slowly and its send queue filled: reconnect",
    str(CLOSE_RESTART): "the node is restarting: reconnect after reason.retry_after_ms",
}
