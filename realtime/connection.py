"""One WebSocket connection: authenticate, read requests, answer each once, push events.

Two tasks per connection: the reader parses and answers frames one at a time (so replies keep
request order), the writer drains a bounded send queue. A client that reads too slowly fills
its queue and is closed (4408) without slowing anyone else; bad input is answered `invalid`
and never ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketState

from domain.errors import DomainError
from domain.model import User
from realtime import metrics
from realtime.auth import user_from_token
from realtime.protocol import (
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    MAX_ID_LENGTH,
    REGISTRY,
    Request,
    validation_fields,
)
from realtime.services import Services, services_of

if TYPE_CHECKING:
    from realtime.hub import Hub

log = logging.getLogger(__name__)

WATCH_TOPICS = {
    "presence.changed": "presence",
    "selected.changed": "selected",
    "bulk.progress": "jobs",
    "bulk.finished": "jobs",
}
"""Events a connection gets only after it asked to watch their topic."""

SEEN_SEQS = 512
CLOSE_TIMEOUT_S = 2.0
SLOW_READER_S = 10.0


@dataclass
class Context:
    """What a verb handler gets besides its request."""

    services: Services
    hub: Hub
    connection: Connection

    @property
    def user(self) -> User:
        return self.connection.user

    @property
    def owner(self) -> int:
        return self.connection.user.data_owner_id


class Connection:
    def __init__(self, websocket: WebSocket, user: User, services: Services, hub: Hub) -> None:
        settings = services.settings
        self.id = secrets.token_hex(8)
        self.websocket = websocket
        self.user = user
        self.owner = user.data_owner_id
        self.context = Context(services, hub, self)
        self.max_frame = settings.ws_max_frame_bytes
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.ws_send_queue)
        self.rate = settings.ws_rate_per_second
        self.burst = float(settings.ws_rate_burst)
        self.tokens = self.burst
        self.refilled = time.monotonic()
        self.watching: dict[str, frozenset[int] | None] = {}
        """topic -> assignment ids it is limited to (None: all)."""
        self.replay_buffer: list[tuple[int, str, str]] | None = None
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closing = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.high_water = max(1, settings.ws_send_queue // 2)

    # Outgoing -----------------------------------------------------------------------------

    def send_text(self, text: str) -> bool:
        """Queue a frame; a full queue closes the connection (the client reads too slowly)."""
        if self.closing.is_set():
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_TOO_SLOW, "send queue full: reading too slowly")
            return False
        return True

    def reply(self, request_id: str | None, data: dict[str, Any]) -> None:
        self.send_text(_dumps({"type": "reply", "id": request_id, "ok": True, "data": data}))

    def reply_error(self, request_id: str | None, code: str, message: str, **details: Any) -> None:
        metrics.ERRORS.labels(code).inc()
        error = {"code": code, "message": message, **details}
        self.send_text(_dumps({"type": "reply", "id": request_id, "ok": False, "error": error}))

    def deliver_event(self, seq: int, name: str, frame: str) -> None:
        """An event for this user from the hub; dropped if it is a topic not watched here."""
        topic = WATCH_TOPICS.get(name)
        if topic is not None and not self.watches(topic, frame):
            return
        if self.replay_buffer is not None:
            self.replay_buffer.append((seq, name, frame))
            return
        self.push_event(seq, frame)

    def push_event(self, seq: int, frame: str) -> None:
        """Send an event frame once per seq, whether it came live or from a replay."""
        if seq in self._seen:
            return
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > SEEN_SEQS:
            self._seen.discard(self._seen_order.popleft())
        if self.send_text(frame):
            metrics.EVENTS_DELIVERED.inc()

    def watches(self, topic: str, frame: str) -> bool:
        if topic not in self.watching:
            return False
        limit = self.watching[topic]
        if limit is None:
            return True
        assignment = json.loads(frame).get("data", {}).get("assignment_id")
        return assignment is not None and int(assignment) in limit

    def close(self, code: int, reason: str = "") -> None:
        """Ask the connection to close with `code`; the run loop does it."""
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            metrics.CLOSES.labels(str(code)).inc()
            self.closing.set()

    # The loops ----------------------------------------------------------------------------

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        writer = asyncio.create_task(self._write_loop())
        closer = asyncio.create_task(self.closing.wait())
        tasks = {reader, writer, closer}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.close_code is not None:
            await close_quietly(self.websocket, self.close_code, self.close_reason)

    async def _write_loop(self) -> None:
        while True:
            text = await self.queue.get()
            await self.websocket.send_text(text)
            metrics.FRAMES.labels("out").inc()
            if self.queue.qsize() < self.high_water:
                self.room.set()

    async def _read_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            metrics.FRAMES.labels("in").inc()
            text = message.get("text")
            if text is None:
                self.reply_error(None, "invalid", "frames are JSON text, not binary")
            else:
                await self.handle(text)
            await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """Backpressure: read the next request only once this client reads its replies.
        A client that sends but never reads is closed like any slow reader."""
        if self.queue.qsize() < self.high_water:
            return
        self.room.clear()
        try:
            async with asyncio.timeout(SLOW_READER_S):
                await self.room.wait()
        except TimeoutError:
            self.close(CLOSE_TOO_SLOW, "replies not read")

    # Requests -----------------------------------------------------------------------------

    async def handle(self, text: str) -> None:
        """Answer one client frame with exactly one reply."""
        if len(text) > self.max_frame:
            self.reply_error(None, "invalid", f"frame larger than {self.max_frame} bytes")
            return
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            self.reply_error(None, "invalid", "the frame is not JSON")
            return
        if not isinstance(data, dict):
            self.reply_error(None, "invalid", "a request is a JSON object with id and type")
            return
        request_id = readable_id(data.get("id"))
        if not self._take_token():
            retry_ms = int(1000 / self.rate) + 1
            self.reply_error(request_id, "rate_limited", "too many frames", retry_after_ms=retry_ms)
            return
        try:
            request = REGISTRY.parse(data)
        except ValidationError as exc:
            self._reply_invalid(request_id, data, exc)
            return
        except RecursionError:
            self.reply_error(request_id, "invalid", "the frame is nested too deeply")
            return
        await self.dispatch(request)

    def _reply_invalid(self, request_id: str | None, data: dict[str, Any], exc: ValidationError):
        kind = data.get("type")
        if isinstance(kind, str) and kind not in REGISTRY.verbs:
            message = f"unknown verb {kind[:64]!r}"
        elif "type" not in data or "id" not in data:
            message = "a request needs an id and a type"
        else:
            message = "bad or missing fields"
        self.reply_error(request_id, "invalid", message, fields=validation_fields(exc)[:20])

    async def dispatch(self, request: Request) -> None:
        verb = REGISTRY.verbs[request.type]
        if verb.roles is not None and self.user.role not in verb.roles:
            self.reply_error(request.id, "forbidden", f"{verb.name} is not for your role")
            return
        try:
            result = await verb.handler(self.context, request)
        except DomainError as error:
            self.reply_error(request.id, error.code, error.message, **error.details)
            return
        except Exception:
            log.exception("verb %s failed for user %s", verb.name, self.user.id)
            self.reply_error(request.id, "internal", "internal server error")
            return
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        self.reply(request.id, result or {})

    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def readable_id(value: Any) -> str | None:
    """The request id to echo in a reply, when one can be read."""
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _dumps(frame: dict[str, Any]) -> str:
    """A frame as compact JSON text (orjson: a 5,000-row overview is one large reply)."""
    return orjson.dumps(frame, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


async def close_quietly(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Send a close frame if the socket is still open; a client that is gone is not an error."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await websocket.close(code, reason)


async def websocket_endpoint(websocket: WebSocket) -> None:
    """`GET /ws?token=...`: 4403 for a foreign Origin, 4401 without a valid token."""
    services = services_of(websocket)
    hub: Hub = websocket.app.state.hub
    origin = websocket.headers.get("origin")
    if origin is not None and origin not in services.settings.allowed_origins:
        await websocket.accept()
        await close_quietly(websocket, CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
        return
    try:
        user = await user_from_token(services, websocket.query_params.get("token"))
    except Exception:
        log.exception("could not check a WebSocket token")
        await websocket.accept()
        await close_quietly(websocket, 1011, "try again later")
        return
    if user is None:
        await websocket.accept()
        await close_quietly(websocket, CLOSE_UNAUTHORIZED, "missing, expired or invalid token")
        return
    await websocket.accept()
    if hub.draining:
        code, reason = hub.restart_close()
        await close_quietly(websocket, code, reason)
        return
    connection = Connection(websocket, user, services, hub)
    await hub.register(connection)
    try:
        await connection.run()
    finally:
        await hub.unregister(connection)
