"""What the hub tests set up: server nodes as real processes, tenants of their own, clients.

Nodes are `dialhub serve` processes on free loopback ports, sharing the run's Redis and
database (REDIS_URL / DATABASE_URL / DIALHUB_DB_SCHEMA from the suite's fixtures). Every tenant
gets a random, large data owner id, so tests sharing one Redis never meet.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from owners import new_owner_id
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from domain.db import repositories as repo
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import CrmKind, Role, User
from realtime.embedded import free_port
from realtime.tokens import issue_token

SECRET = "hub-test-secret"
PRESENCE_TIMEOUT = 1.5
DIALHUB = str(Path(sys.executable).with_name("dialhub"))
START_TIMEOUT = 60.0
WAIT = 5.0
"""Bound on every wait for something the server should do at once."""

FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale"),),
)


# Nodes ----------------------------------------------------------------------------------------


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def metrics(self) -> str:
        return httpx.get(f"{self.http}/metrics", timeout=5).text


def node_env(database: dict[str, str | None], redis_url: str, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALHUB_")}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=str(database["url"]),
        DIALHUB_SECRET_KEY=SECRET,
        DIALHUB_VAR_DIR=str(var_dir),
        DIALHUB_PRESENCE_TIMEOUT=str(PRESENCE_TIMEOUT),
        DIALHUB_ALLOWED_ORIGINS='["http://allowed.example"]',
        DIALHUB_WS_SEND_QUEUE="64",
        DIALHUB_SHUTDOWN_RETRY_MS="[200, 900]",
        DIALHUB_SMS_INTERVAL="0",  # a test that wants SMS sent starts a node of its own
    )
    if database["schema"]:
        env["DIALHUB_DB_SCHEMA"] = str(database["schema"])
    else:
        env.pop("DIALHUB_DB_SCHEMA", None)
    return env


def start_node(env: dict[str, str], work_dir: Path, **extra_env: str) -> Node:
    port = free_port()
    log = work_dir / f"node-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DIALHUB, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, **extra_env},
            cwd=work_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = Node(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node exited at start:\n{log.read_text()}")
        try:
            if httpx.get(f"{node.http}/readyz", timeout=1.0).status_code == 200:
                return node
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    node.kill()
    raise RuntimeError(f"node not ready in {START_TIMEOUT}s:\n{log.read_text()}")


# Tenants --------------------------------------------------------------------------------------


@dataclass
class Tenant:
    owner: int
    assignment_id: int
    agents: list[User]
    supervisor: User
    admin: User
    customer_ids: list[int]

    def token(self, user: User, ttl: int = 3600) -> str:
        return issue_token(SECRET, user.id, ttl).token


async def make_tenant(engine: AsyncEngine, *, agents: int = 3, customers: int = 5) -> Tenant:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"hub-{tag}", id=new_owner_id())
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C, ())
        assignment = await repo.create_assignment(conn, owner.id, crm.id, "Calls", FLOW)

        async def user(name: str, role: Role) -> User:
            return await repo.create_user(
                conn, owner.id, f"{name}-{tag}", name, role, "", password_hash="x"
            )

        users = [await user(f"Agent {i}", Role.AGENT) for i in range(agents)]
        supervisor = await user("Sara Supervisor", Role.SUPERVISOR)
        admin = await user("Adam Admin", Role.ADMIN)
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"c{i}",
                    "name": f"Customer {i}",
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                }
                for i in range(customers)
            ],
        )
        ids = []
        for i in range(customers):
            found = await repo.get_customer_by_external_id(conn, owner.id, crm.id, f"c{i}")
            assert found is not None
            ids.append(found.id)
    return Tenant(owner.id, assignment.id, users, supervisor, admin, ids)


# Clients --------------------------------------------------------------------------------------


@dataclass
class Client:
    """A WebSocket client: requests wait for their reply; events are kept in arrival order."""

    ws: ClientConnection
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    counter: int = 0

    async def _read_one(self, within: float) -> None:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        frame = json.loads(raw)
        if frame.get("type") == "event":
            self.events.append(frame)
        else:
            self.replies[str(frame.get("id"))] = frame

    async def request(self, type_: str, within: float = WAIT, **fields: Any) -> dict[str, Any]:
        self.counter += 1
        request_id = f"r{self.counter}"
        await self.ws.send(json.dumps({"id": request_id, "type": type_, **fields}))
        return await self.reply_to(request_id, within)

    async def reply_to(self, request_id: str, within: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while request_id not in self.replies:
            await self._read_one(max(0.01, deadline - time.monotonic()))
        return self.replies.pop(request_id)

    async def event(self, name: str, within: float = WAIT, **match: Any) -> dict[str, Any]:
        """The first event `name` (whose data has the `match` fields) not yet taken."""
        deadline = time.monotonic() + within
        while True:
            for index, frame in enumerate(self.events):
                data = frame.get("data", {})
                if frame["event"] == name and all(data.get(k) == v for k, v in match.items()):
                    return self.events.pop(index)
            await self._read_one(max(0.01, deadline - time.monotonic()))

    async def close(self) -> None:
        await self.ws.close()


async def connect(url: str, token: str | None, **options: Any) -> Client:
    target = url if token is None else f"{url}?token={token}"
    ws = await websockets.connect(target, compression=None, open_timeout=WAIT, **options)
    return Client(ws)


async def close_code(url: str, **options: Any) -> int | None:
    """Connect and wait for the server to close: the close code it sent."""
    async with websockets.connect(url, compression=None, open_timeout=WAIT, **options) as ws:
        try:
            await asyncio.wait_for(ws.recv(), WAIT)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


# Redis connections cut under the nodes ----------------------------------------------------------


async def cut_pub_sub(servers: list[Any]) -> int:
    """Kill every pub/sub connection on these Redis servers (plain clients, one per server: a
    cluster's nodes each), as a network cut or a Redis restart would; how many were killed."""
    killed = 0
    for server in servers:
        killed += int(await server.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
    return killed


async def subscribers(servers: list[Any], name: str) -> int:
    """Subscribers of channel ``name`` on these servers together."""
    total = 0
    for server in servers:
        total += int(dict(await server.pubsub_numsub(name)).get(name, 0))
    return total


async def wait_for_subscribers(
    servers: list[Any], name: str, count: int, within: float = WAIT
) -> None:
    """Until ``name`` has ``count`` subscribers again (the nodes reconnected), bounded."""
    deadline = time.monotonic() + within
    while await subscribers(servers, name) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: fewer than {count} subscribers after {within}s")
        await asyncio.sleep(0.05)


async def expect_events_after_a_cut(
    nodes: tuple[Node, Node], new_shop: Any, servers: list[Any]
) -> None:
    """Supervisors watching on both nodes and an agent on one; every pub/sub connection on
    ``servers`` killed; once the nodes are subscribed again, a selection reaches both
    supervisors and a release throws the agent out."""
    from shop_kit import ok, start  # shop_kit builds on this module

    from presence.agents import channel, watchers_channel

    node_a, node_b = nodes
    shop = await new_shop(customers=2)
    agent = shop.agents[0]
    watching = [
        await connect(node_a.ws, shop.token(shop.supervisor)),
        await connect(node_b.ws, shop.token(shop.supervisor)),
    ]
    tab = await connect(node_b.ws, shop.token(agent))
    try:
        for supervisor in watching:
            ok(await supervisor.request("selected.watch"))
        ok(await tab.request("ping"))
        assert await cut_pub_sub(servers) >= 2
        await wait_for_subscribers(servers, watchers_channel(shop.owner), 2)
        await wait_for_subscribers(servers, channel(shop.owner, agent.id), 1)

        screen = await start(tab, shop)
        customer_id = screen["customer"]["id"]
        for supervisor in watching:
            await supervisor.event("selected.changed", customer_id=customer_id, op="selected")
        released = ok(await watching[0].request("selection.release", customer_id=customer_id))
        assert released == {"released": True}
        revoked = await tab.event("selection.revoked")
        assert revoked["data"]["customer_id"] == customer_id
    finally:
        for client in (*watching, tab):
            await client.close()
