"""The Starlette application: routes, error bodies, and the lifespan that opens the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from realtime.api_models import LoginRequest
from realtime.assignments import list_assignments
from realtime.auth import login
from realtime.endpoints import endpoint
from realtime.errors import EXCEPTION_HANDLERS
from realtime.health import healthz, readyz
from realtime.services import close_services, open_services
from realtime.settings import Settings

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"


def create_app(settings: Settings | None = None, *, web_client: Path = WEB_CLIENT) -> Starlette:
    """A dialhub node for `settings` (read from the environment when omitted)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = open_services(settings)
        app.state.services = services
        try:
            yield
        finally:
            await close_services(services)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/api/auth/token", endpoint(login, body=LoginRequest), methods=["POST"]),
        Route(
            "/api/assignments",
            endpoint(list_assignments, authenticated=True),
            methods=["GET"],
        ),
    ]
    if web_client.is_dir():
        routes.append(Mount("/", StaticFiles(directory=web_client, html=True), name="web_client"))
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
