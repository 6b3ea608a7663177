"""Kick latency across nodes: `python bench/kick.py`.

Two `dialhub serve` nodes share one Redis and one database. BENCH_KICK_AGENTS agents (default
1,000) hold a selection each and are connected to node B; a supervisor on node A releases them
one by one. Each kick is timed from sending `selection.release` to the agent's connection
receiving `selection.revoked`. As a same-run baseline, `ping` round trips are timed on the same
nodes. Without REDIS_URL / DATABASE_URL it starts an embedded Redis and a SQLite file in a
temporary directory. The last output line is JSON:
{"bench": "kick", "agents": N, "p50_ms": .., "p99_ms": .., "lost": 0, "echo_p50_ms": ..}
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets
from sqlalchemy import text

from bench._nodes import (
    SALE_FLOW,
    analyze,
    checkpoint,
    echo_times,
    forget_owner,
    percentile,
    request,
    start_node,
    stop_nodes,
)
from domain.db import repositories as repo
from domain.db.engine import async_url, make_engine, migrate
from domain.model import CrmKind, Role
from presence.selections import SelectionStore
from presence.service import SelectionService
from realtime.embedded import EmbeddedRedis
from realtime.tokens import issue_token

SECRET = "bench-kick-secret"
KICK_WAIT_S = 5.0
ECHO_ROUNDS = 500


async def seed(engine, n: int) -> tuple[int, list[int], int, list[int]]:
    """An owner with n agents, a supervisor and n customers; ids come back."""
    tag = uuid.uuid4().hex[:8]
    # A random large id: on a shared Redis the run's keys never meet a real data owner's.
    owner_id = random.SystemRandom().randrange(6_000_000_000, 7_000_000_000)
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bench-kick-{tag}", id=owner_id)
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(conn, owner.id, crm.id, "Kick", SALE_FLOW)
        agents = [
            (
                await repo.create_user(
                    conn,
                    owner.id,
                    f"kick{i}-{tag}",
                    f"Agent {i}",
                    Role.AGENT,
                    "",
                    password_hash="x",
                )
            ).id
            for i in range(n)
        ]
        supervisor = await repo.create_user(
            conn, owner.id, f"kicksup-{tag}", "Supervisor", Role.SUPERVISOR, "", password_hash="x"
        )
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"k{i}",
                    "name": f"Customer {i}",
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                }
                for i in range(n)
            ],
        )
        rows = await conn.execute(
            text("SELECT id, external_id FROM customers WHERE crm_id = :crm"), {"crm": crm.id}
        )
        by_external = {external: cid for cid, external in rows.all()}
    return owner.id, agents, supervisor.id, [by_external[f"k{i}"] for i in range(n)]


async def run(work: Path, redis_url: str, db_url: str, schema: str | None, n: int) -> dict:
    engine = make_engine(db_url, schema=schema)
    await migrate(engine)
    owner, agents, supervisor, customers = await seed(engine, n)
    store_client = __import__("redis.asyncio", fromlist=["Redis"]).Redis.from_url(
        redis_url, decode_responses=True
    )
    selections = SelectionService(engine, SelectionStore(store_client))
    for agent, customer in zip(agents, customers, strict=True):
        await selections.select(owner, agent, customer)
    await store_client.aclose()
    await analyze(engine)
    await checkpoint(engine)

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALHUB_")}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=db_url,
        DIALHUB_SECRET_KEY=SECRET,
        DIALHUB_VAR_DIR=str(work),
        DIALHUB_WS_RATE="100000",
        DIALHUB_WS_RATE_BURST="100000",
    )
    if schema:
        env["DIALHUB_DB_SCHEMA"] = schema
    nodes = [start_node(env, work), start_node(env, work)]
    port_a, port_b = (node.port for node in nodes)
    try:
        token = {u: issue_token(SECRET, u, 3600).token for u in [*agents, supervisor]}
        sockets = []
        for agent in agents:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port_b}/ws?token={token[agent]}", compression=None
            )
            await request(ws, "hello", "resume")
            sockets.append(ws)
        echo = await echo_times(
            f"ws://127.0.0.1:{port_b}/ws?token={token[supervisor]}", ECHO_ROUNDS
        )
        echo += await echo_times(
            f"ws://127.0.0.1:{port_a}/ws?token={token[supervisor]}", ECHO_ROUNDS
        )

        kicks: list[float] = []
        lost = 0
        async with websockets.connect(
            f"ws://127.0.0.1:{port_a}/ws?token={token[supervisor]}", compression=None
        ) as sup:
            for i, (ws, customer) in enumerate(zip(sockets, customers, strict=True)):
                started = time.perf_counter()
                await sup.send(
                    json.dumps(
                        {"id": f"k{i}", "type": "selection.release", "customer_id": str(customer)}
                    )
                )
                try:
                    async with asyncio.timeout(KICK_WAIT_S):
                        while True:
                            frame = json.loads(await ws.recv())
                            if frame.get("event") == "selection.revoked":
                                break
                    kicks.append((time.perf_counter() - started) * 1000)
                except TimeoutError:
                    lost += 1
                while True:  # the supervisor's reply, before the next release
                    frame = json.loads(await sup.recv())
                    if frame.get("id") == f"k{i}":
                        if not frame["ok"]:
                            raise SystemExit(f"release failed: {frame}")
                        break
        for ws in sockets:
            await ws.close()
    finally:
        stop_nodes(nodes)
        await engine.dispose()
        await forget_owner(redis_url, owner)  # only this run's keys
    return {
        "bench": "kick",
        "agents": n,
        "p50_ms": round(statistics.median(kicks), 2) if kicks else None,
        "p99_ms": round(percentile(kicks, 0.99), 2) if kicks else None,
        "max_ms": round(max(kicks), 2) if kicks else None,
        "lost": lost,
        "echo_p50_ms": round(statistics.median(echo), 2),
        "echo_p99_ms": round(percentile(echo, 0.99), 2),
    }


async def main() -> dict:
    n = int(os.environ.get("BENCH_KICK_AGENTS", "1000"))
    with tempfile.TemporaryDirectory(prefix="dialhub-kick-") as tmp:
        work = Path(tmp)
        embedded = None
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            embedded = EmbeddedRedis(work / "redis").start()
            redis_url = embedded.url
        schema = None
        configured = os.environ.get("DATABASE_URL")
        db_url = async_url(configured, work / "kick.sqlite3")
        if configured and not db_url.startswith("sqlite"):
            schema = f"bench_kick_{uuid.uuid4().hex[:10]}"
            admin = make_engine(db_url)
            async with admin.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await admin.dispose()
        try:
            return await run(work, redis_url, configured or db_url, schema, n)
        finally:
            if schema:
                admin = make_engine(db_url)
                async with admin.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                await admin.dispose()
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
