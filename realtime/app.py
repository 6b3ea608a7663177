"""The Starlette application: routes, error bodies, and the lifespan that opens the services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import realtime.verbs  # noqa: F401  (registers every verb)
from domain.db.sms_outbox import SmsProvider, deliver_due
from domain.db.sms_providers import FileSmsProvider, HttpSmsProvider
from realtime.api_models import LoginRequest
from realtime.assignments import list_assignments
from realtime.auth import login
from realtime.bulk_jobs import JobRunner
from realtime.connection import websocket_endpoint
from realtime.dialing import DialerRelay
from realtime.endpoints import endpoint
from realtime.errors import EXCEPTION_HANDLERS
from realtime.health import healthz, readyz
from realtime.hub import Hub
from realtime.metrics import metrics
from realtime.protocol import protocol_schema
from realtime.services import (
    Services,
    close_services,
    freeze_startup_heap,
    open_services,
    warm_up,
)
from realtime.settings import Settings
from realtime.uploads import upload_import_file

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"

log = logging.getLogger(__name__)

SHUTDOWN_STEP_S = 8.0


async def send_sms_forever(services: Services, stop: asyncio.Event) -> None:
    """Rule 23: every node sends the outbox's due SMS now and then; leases in the outbox make
    sure each goes out once however many nodes run this. Never cancelled in the middle of a
    round (that would strand a database connection): `stop` ends it between rounds."""
    settings = services.settings
    if not settings.sms_interval_seconds:
        return
    provider: SmsProvider
    if settings.sms_gateway_url:
        provider = HttpSmsProvider(settings.sms_gateway_url, token=settings.sms_gateway_token)
    else:
        provider = FileSmsProvider(settings.var_dir / "sms-outbox.jsonl")
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.sms_interval_seconds)
        if stop.is_set():
            return
        try:
            await deliver_due(services.engine, provider)
        except Exception:  # the database is away: try again on the next round
            log.exception("sending due SMS failed")


def create_app(
    settings: Settings | None = None,
    *,
    web_client: Path = WEB_CLIENT,
    send_sms: bool = False,
    own_process: bool = False,
) -> Starlette:
    """A dialhub node for `settings` (read from the environment when omitted).
    ``own_process``: the app is the process (`dialhub serve`), not one of many in it (tests):
    once started, what it built is kept out of later garbage collections."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = open_services(settings)
        app.state.services = services
        await warm_up(services)
        hub = Hub(services)
        app.state.hub = hub
        await hub.start()
        # The node's dialer calls for the agents connected here; its events go to them.
        dialing = DialerRelay(services, hub)
        await dialing.start()
        # Bulk jobs started here run in the background; jobs nobody runs are resumed.
        job_runner = JobRunner(services)
        app.state.job_runner = job_runner
        await job_runner.start()
        stop_sms = asyncio.Event()
        # `dialhub serve` sends SMS (send_sms=True); an app embedded elsewhere does not.
        sms = asyncio.create_task(
            send_sms_forever(services, stop_sms) if send_sms else asyncio.sleep(0)
        )
        if own_process:
            freeze_startup_heap()
        try:
            with drain_before_sigterm(hub):
                yield
        finally:
            stop_sms.set()
            # Every step of a shutdown is bounded: a node asked to stop always stops.
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_STEP_S):
                        await job_runner.stop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_STEP_S):
                        await sms
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_STEP_S):
                        await dialing.stop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_STEP_S):
                        await hub.stop()
            finally:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_STEP_S):
                        await close_services(services)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/protocol.json", protocol_json, methods=["GET"]),
        Route("/api/auth/token", endpoint(login, body=LoginRequest), methods=["POST"]),
        Route(
            "/api/assignments",
            endpoint(list_assignments, authenticated=True),
            methods=["GET"],
        ),
        Route("/api/bulk/uploads", upload_import_file, methods=["POST"]),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    if web_client.is_dir():
        routes.append(Mount("/", StaticFiles(directory=web_client, html=True), name="web_client"))
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)


async def protocol_json(_request: Request) -> JSONResponse:
    """The JSON Schema of every client and server frame, from the models the server uses."""
    return JSONResponse(protocol_schema())


@contextlib.contextmanager
def drain_before_sigterm(hub: Hub) -> Iterator[None]:
    """On SIGTERM, close every WebSocket with 1012 and a retry hint first, then let the server's
    own handler shut down (it would close them with a bare 1012)."""
    try:
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
    except (RuntimeError, ValueError):
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        async def drain_then_stop() -> None:
            try:
                await hub.drain()
            finally:
                _call(previous, signum, frame)

        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop()))

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (an embedded app): no signal to hook
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)


def _call(handler: Callable[..., Any] | int | None, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
