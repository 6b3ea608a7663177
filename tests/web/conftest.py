"""The web client under test: a dialhub server process serving web_client/, a tenant of our
own in the run's database and Redis, and Debian's Chromium driven by Playwright.

Every page is a browser context of its own (its own sessionStorage, its own WebSocket), as two
agents and a supervisor at three desks would be. When a test fails, a screenshot of each of
its pages is saved under test-artifacts/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import AssignmentSetup, CrmKind, FieldType, InfoField, Role, User
from domain.passwords import hash_password
from presence.keys import owner_prefix
from realtime.embedded import free_port

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent.parent / "test-artifacts"
DIALHUB = str(Path(sys.executable).with_name("dialhub"))
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
PASSWORD = "web-test-password"
START_TIMEOUT = 60.0
WAIT_MS = 5000
"""Bound on waiting for something the page should do promptly (a reply, a render)."""

FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("sale", "Sale"),
    ),
    outcomes=(
        Outcome(
            "interested",
            "Interested",
            frozenset({AVAILABLE}),
            "interested",
            details=(DetailField("note", "Note", FieldType.TEXT),),
        ),
        Outcome(
            "sale",
            "Sale",
            frozenset({AVAILABLE, "interested"}),
            "sale",
            details=(DetailField("plan", "Price plan", FieldType.TEXT, required=True),),
        ),
    ),
)
SIMULATED_PHONES = {
    # Calls ring briefly and are answered, except numbers ending in 91 (busy) and 92 (no
    # answer); an answered call talks until the agent hangs up.
    "DIALHUB_SIM_ANSWER": "1",
    "DIALHUB_SIM_BUSY": "0",
    "DIALHUB_SIM_RING": "0.3",
    "DIALHUB_SIM_TALK": "600",
    "DIALHUB_SIM_NO_ANSWER": "0.4",
    "DIALHUB_SIM_FATES": json.dumps({"91": "busy", "92": "no_answer"}),
}
INFO_FIELDS = (
    InfoField("municipality", "Municipality", FieldType.TEXT),
    InfoField("customer_since", "Customer since", FieldType.DATE),  # no customer has a value
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM is not None:
        return
    skip = pytest.mark.skip(reason="browser tests need a Chromium binary (Debian: chromium)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# The server ---------------------------------------------------------------------------------


@dataclass
class Server:
    """`dialhub serve` on a free loopback port, restartable on the same port."""

    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [DIALHUB, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in {START_TIMEOUT}s:\n{self.log.read_text()}")

    def terminate(self) -> None:
        """SIGTERM: the node closes every WebSocket with 1012 and a retry hint, then exits."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def web_server(
    engine: AsyncEngine, database: dict[str, str | None], redis_url: str, work_dir: Path
) -> Iterator[Server]:
    """One node serving the API, the WebSocket and web_client/ on the run's database (the
    `engine` fixture migrated it) and Redis. Its browser Origin is allowed; its simulated phone
    system rings briefly (SIMULATED_PHONES)."""
    port = free_port()
    var_dir = work_dir / "web"
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALHUB_")}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=str(database["url"]),
        DIALHUB_SECRET_KEY=f"web-test-{uuid.uuid4().hex}",
        DIALHUB_VAR_DIR=str(var_dir),
        DIALHUB_ALLOWED_ORIGINS=f'["http://127.0.0.1:{port}"]',
        DIALHUB_PRESENCE_TIMEOUT="2",
        DIALHUB_SHUTDOWN_RETRY_MS="[100, 400]",
        **SIMULATED_PHONES,
    )
    if database["schema"]:
        env["DIALHUB_DB_SCHEMA"] = str(database["schema"])
    server = Server(env, port, var_dir / f"server-{port}.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


# The tenant ---------------------------------------------------------------------------------


@dataclass
class Tenant:
    owner: int
    assignment_id: int
    assignment_name: str
    agents: list[User]
    supervisor: User
    customers: list[str]
    """Customer names, in id order."""


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
async def tenant(
    engine: AsyncEngine, redis_url: str, password_hash: str
) -> AsyncIterator[Callable[..., Awaitable[Tenant]]]:
    """A data owner of its own with one list: agents, a supervisor and available customers,
    all granted the list. Its Redis keys are removed at the end."""
    owners: list[int] = []

    async def make(
        *,
        agents: int = 2,
        customers: int = 6,
        setup: AssignmentSetup | None = None,
        phone_endings: list[str] | None = None,
    ) -> Tenant:
        """`setup`: the list's assignment setup (dial mode, timers); `phone_endings[i]`: the
        last two digits of customer i's number (the simulator's fates)."""
        tag = uuid.uuid4().hex[:8]
        owner_id = random.SystemRandom().randrange(3_000_000_000, 4_000_000_000)
        async with engine.begin() as conn:
            owner = await repo.create_data_owner(conn, f"web-{tag}", id=owner_id)
            owners.append(owner.id)
            crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C, INFO_FIELDS)
            name = f"Winter offer {tag}"
            assignment = await repo.create_assignment(conn, owner.id, crm.id, name, FLOW, setup)

            async def user(label: str, role: Role) -> User:
                created = await repo.create_user(
                    conn,
                    owner.id,
                    f"{label}-{tag}",
                    label.title(),
                    role,
                    "",
                    password_hash=password_hash,
                )
                await repo.grant(conn, created.id, assignment.id)
                return created

            people = [await user(f"agent{i}", Role.AGENT) for i in range(1, agents + 1)]
            supervisor = await user("supervisor", Role.SUPERVISOR)
            names = [f"Customer {chr(65 + i)} {tag}" for i in range(customers)]
            await repo.insert_customers(
                conn,
                [
                    {
                        "data_owner_id": owner.id,
                        "crm_id": crm.id,
                        "external_id": f"w{i}",
                        "name": names[i],
                        "phones": [_phone(i, phone_endings)],
                        "info": {"municipality": "Bergen"},
                        "assignment_id": assignment.id,
                        "segment_id": assignment.unsegmented.id,
                    }
                    for i in range(customers)
                ],
            )
        return Tenant(owner.id, assignment.id, name, people, supervisor, names)

    yield make
    client = aioredis.Redis.from_url(redis_url)
    try:
        for owner in owners:
            keys = [k async for k in client.scan_iter(match=f"{owner_prefix(owner)}*")]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


def _phone(i: int, endings: list[str] | None) -> str:
    """Customer i's number; with `endings`, one ending in endings[i]."""
    if endings and i < len(endings):
        return f"+479{i:05d}{endings[i]}"
    return f"+47900000{i:02d}"


# The browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; Playwright never downloads a browser here."""
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def log_in(
    browser: Browser, web_server: Server, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """log_in(user, path="/", clock_skew=None): a fresh browser context logged in as `user`
    through the form; `clock_skew` sets the page's clock that far off the real time.
    On failure each page's screenshot goes to test-artifacts/<test>/."""
    pages: list[tuple[str, Page]] = []

    async def open_page(user: User, path: str = "/", clock_skew: timedelta | None = None) -> Page:
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800}, locale="en-GB", base_url=web_server.url
        )
        context.set_default_timeout(10_000)
        page = await context.new_page()
        pages.append((user.username, page))
        if clock_skew is not None:  # the desk's clock is this far off (time still runs)
            await page.clock.install(time=datetime.now(UTC) + clock_skew)
        await page.goto(path)
        await page.get_by_label("Username").fill(user.username)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        return page

    yield open_page
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    if failed:
        folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        folder.mkdir(parents=True, exist_ok=True)
    for index, (username, page) in enumerate(pages):
        if failed:
            try:
                await page.screenshot(path=str(folder / f"{index}-{username}.png"), full_page=True)
            except Exception as error:  # a closed page cannot be shot; say so, go on
                (folder / f"{index}-{username}.txt").write_text(str(error))
        await page.context.close()
