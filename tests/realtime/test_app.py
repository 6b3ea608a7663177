"""The HTTP API of docs/protocol.md against a real Redis and the migrated test database."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import demo
from domain.db.seed import seed_demo
from realtime.app import create_app
from realtime.embedded import EmbeddedRedis
from realtime.services import close_services, open_services, warm_up
from realtime.settings import Settings
from realtime.tokens import issue_token

SECRET = "test-secret-key"
NORDLYS_ASSIGNMENTS = {demo.FIXED_PRICE, demo.WIN_BACK, demo.ENERGY_AUDIT}


def settings_for(database: dict[str, str | None], redis_url: str, var_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        DATABASE_URL=database["url"],
        DIALHUB_DB_SCHEMA=database["schema"],
        REDIS_URL=redis_url,
        DIALHUB_VAR_DIR=var_dir,
        DIALHUB_SECRET_KEY=SECRET,
        DIALHUB_TOKEN_TTL=3600,
    )


@pytest.fixture(scope="module")
async def demo_data(engine: AsyncEngine) -> dict[str, Any]:
    """The demo loaded into the shared test database (seed_demo does nothing the second time)."""
    return await seed_demo(engine)


@pytest.fixture
async def client(
    demo_data: dict[str, Any],
    database: dict[str, str | None],
    redis_url: str,
    work_dir: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    # The HTTP routes with the node's services but without its hub: the hub's lifespan runs in
    # the real nodes of the other tests (start, SIGTERM, SIGKILL).
    settings = settings_for(database, redis_url, work_dir)
    app = create_app(settings)
    app.state.services = open_services(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http:
            yield http
    finally:
        await close_services(app.state.services)


async def log_in(client: httpx.AsyncClient, username: str, password: str = "demo") -> str:
    response = await client.post(
        "/api/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_answers_a_token_its_expiry_and_the_user(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/api/auth/token", json={"username": "supervisor1", "password": "demo"}
    )
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["token"], str) and body["token"]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(seconds=3590) < expires_at < before + timedelta(seconds=3610)
    user = body["user"]
    assert isinstance(user["id"], str) and user["id"].isdigit()
    assert user["role"] == "supervisor"
    assert user["name"]


async def test_login_with_a_wrong_password_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/token", json={"username": "agent1", "password": "wrong"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.json()["error"]["message"]


async def test_login_of_an_unknown_user_looks_like_a_wrong_password(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.post("/api/auth/token", json={"username": "nobody", "password": "x"})
    wrong = await client.post("/api/auth/token", json={"username": "agent1", "password": "x"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"username": "agent1"}',
        b'{"username": "", "password": "demo"}',
        b'{"username": 5, "password": "demo"}',
    ],
)
async def test_a_malformed_login_body_is_400_invalid(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/api/auth/token", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


async def test_an_agent_sees_its_granted_assignments_with_counts_and_segments(
    client: httpx.AsyncClient,
) -> None:
    token = await log_in(client, "agent1")
    response = await client.get("/api/assignments", headers=bearer(token))
    assert response.status_code == 200
    assignments = response.json()
    assert {a["name"] for a in assignments} == NORDLYS_ASSIGNMENTS
    for assignment in assignments:
        assert isinstance(assignment["id"], str)
        assert isinstance(assignment["available"], int) and assignment["available"] > 0
        assert assignment["segments"], assignment
        for segment in assignment["segments"]:
            assert isinstance(segment["id"], str) and segment["name"]


async def test_another_data_owners_agent_sees_only_its_own_assignments(
    client: httpx.AsyncClient,
) -> None:
    token = await log_in(client, "fjord_agent1")
    response = await client.get("/api/assignments", headers=bearer(token))
    assert response.status_code == 200
    names = {a["name"] for a in response.json()}
    assert names == {demo.HOME_INSURANCE}
    assert not names & NORDLYS_ASSIGNMENTS


async def test_assignments_without_a_token_are_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/assignments")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_assignments_with_a_forged_token_are_401(client: httpx.AsyncClient) -> None:
    login = await client.post("/api/auth/token", json={"username": "agent1", "password": "demo"})
    token, user_id = login.json()["token"], int(login.json()["user"]["id"])
    forged = issue_token("not-the-server-secret", user_id, 3600).token
    body, signature = token.split(".")
    tampered = body + "." + signature[::-1]
    for bad in (forged, tampered, "garbage"):
        response = await client.get("/api/assignments", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] == "unauthorized"


async def test_assignments_with_an_expired_token_are_401(client: httpx.AsyncClient) -> None:
    login = await client.post("/api/auth/token", json={"username": "agent1", "password": "demo"})
    user_id = int(login.json()["user"]["id"])
    expired = issue_token(SECRET, user_id, 60, now=datetime.now(UTC) - timedelta(hours=1)).token
    response = await client.get("/api/assignments", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"ok": True}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ok"] is True


def test_readiness_names_a_redis_that_does_not_answer(spare_node: Any, tmp_path: Path) -> None:
    """A real node whose Redis dies: /readyz turns 503 naming Redis (a load balancer drains
    it), /healthz stays 200."""
    with EmbeddedRedis(tmp_path / "redis") as private:
        node = spare_node(REDIS_URL=private.url)
        assert httpx.get(f"{node.http}/readyz", timeout=5).status_code == 200
    response = None
    for _ in range(50):  # bounded: 10 s
        response = httpx.get(f"{node.http}/readyz", timeout=5)
        if response.status_code == 503:
            break
        time.sleep(0.2)
    assert response is not None and response.status_code == 503
    assert response.json()["failed"] == ["redis"]
    assert httpx.get(f"{node.http}/healthz", timeout=5).status_code == 200


async def test_the_landing_page_is_served_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "/api/auth/token" in response.text
    assert '<script type="module">' in response.text


async def test_unknown_api_paths_answer_json_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_node_opens_its_connections_before_it_serves(
    engine: AsyncEngine, database: dict[str, str | None], redis_url: str, work_dir: Path
) -> None:
    settings = settings_for(database, redis_url, work_dir).model_copy(update={"db_pool_size": 3})
    services = open_services(settings)
    try:
        await warm_up(services)
        if engine.dialect.name == "postgresql":
            pool = services.engine.sync_engine.pool
            assert pool.checkedin() == 3  # all three open and kept, none past the pool
            assert pool.overflow() <= 0
        assert await services.redis.ping()
    finally:
        await close_services(services)


async def test_a_node_whose_database_is_down_still_starts(
    database: dict[str, str | None],
    redis_url: str,
    work_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on port 1: the warm-up logs it and returns; /readyz reports it later.
    settings = settings_for(
        {"url": "postgresql://nobody@127.0.0.1:1/none", "schema": None}, redis_url, work_dir
    )
    services = open_services(settings)
    try:
        await warm_up(services)
    finally:
        await close_services(services)
    assert "warming up the database connections failed" in caplog.text


async def test_a_node_in_its_own_process_keeps_its_startup_heap_out_of_collections(
    demo_data: dict[str, Any], database: dict[str, str | None], redis_url: str, work_dir: Path
) -> None:
    # `dialhub serve` is the process: what it built to start is frozen once it has started, so
    # full collections under load walk only what the work creates.
    gc.unfreeze()
    app = create_app(settings_for(database, redis_url, work_dir), own_process=True)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()  # the test process goes on collecting as before


async def test_an_app_embedded_in_a_process_leaves_its_collections_alone(
    demo_data: dict[str, Any], database: dict[str, str | None], redis_url: str, work_dir: Path
) -> None:
    gc.unfreeze()
    app = create_app(settings_for(database, redis_url, work_dir))
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
