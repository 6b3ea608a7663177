"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Redis and the database)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from realtime.services import Services, services_of

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> JSONResponse:
    """200 when both answer; 503 naming each one that does not (a load balancer drains us)."""
    services = services_of(request)
    redis_ok, database_ok = await asyncio.gather(_redis_ok(services), _database_ok(services))
    checks = {"redis": redis_ok, "database": database_ok}
    failed = [name for name, ok in checks.items() if not ok]
    body = {"ok": not failed, "checks": checks}
    if failed:
        body["failed"] = failed
    return JSONResponse(body, 503 if failed else 200)


async def _redis_ok(services: Services) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return bool(await services.redis.ping())
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: Redis does not answer: %r", exc)
        return False


async def _database_ok(services: Services) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), services.engine.connect() as conn:
            return (await conn.scalar(text("SELECT 1"))) == 1
    except Exception as exc:
        log.warning("readiness: the database does not answer: %r", exc)
        return False
