"""Adapters from Starlette requests to typed handlers: parse the body, authenticate, serialise.

A handler is `async def handler(services, *, body=<model>, user=<User>) -> reply`; it never sees
a dict or a Request, so it reads like the rule it implements and tests can call it directly.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.auth import require_user
from realtime.errors import ApiError
from realtime.services import services_of

Handler = Callable[..., Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]

_ANY = TypeAdapter(Any)
M = TypeVar("M", bound=BaseModel)


def endpoint(
    handler: Handler, *, body: type[BaseModel] | None = None, authenticated: bool = False
) -> Endpoint:
    """A Starlette endpoint that calls `handler` with the parsed `body` and/or the `user`."""

    async def run(request: Request) -> Response:
        services = services_of(request)
        kwargs: dict[str, Any] = {}
        if authenticated:
            kwargs["user"] = await require_user(services, request)
        if body is not None:
            kwargs["body"] = await read_body(request, body)
        return JSONResponse(_ANY.dump_python(await handler(services, **kwargs), mode="json"))

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`; a 400 `invalid` error naming the bad fields otherwise."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid", "the body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(map(str, err["loc"])), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(
            400, "invalid", "the body has bad or missing fields", fields=fields
        ) from None
