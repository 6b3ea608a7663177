"""Idle connections one node holds: `python bench/connections.py`.

One `dialhub serve` process; BENCH_CONNECTIONS authenticated agents (default 10,000) connect
from BENCH_CLIENT_PROCESSES separate client processes (default 2; per-message deflate off),
send `resume`, and stay, with WebSocket keepalive pings and the server's presence heartbeats
running. The node's RSS is read before and after. Without REDIS_URL / DATABASE_URL it starts an
embedded Redis and a SQLite file in a temporary directory. The last output line is JSON:
{"bench": "connections", "connections": N, "rss_mb": .., "kb_per_connection": ..}
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import websockets
from sqlalchemy import text

from bench._nodes import raise_nofile, start_node
from domain.db import repositories as repo
from domain.db.engine import async_url, make_engine, migrate
from domain.model import Role
from realtime.embedded import EmbeddedRedis
from realtime.tokens import issue_token

SECRET = "bench-connections-secret"
CONNECT_CONCURRENCY = 100
HOLD_S = 15.0
"""How long every connection stays idle (with heartbeats) before RSS is read again."""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def seed_users(engine, n: int) -> list[int]:
    tag = uuid.uuid4().hex[:8]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bench-conn-{tag}")
        return [
            (
                await repo.create_user(
                    conn, owner.id, f"c{i}-{tag}", f"Agent {i}", Role.AGENT, "", password_hash="x"
                )
            ).id
            for i in range(n)
        ]


def client_process(url: str, tokens: list[str], ready, release, results) -> None:
    """Open one connection per token, resume, then hold them until `release` is set."""
    raise_nofile()

    async def run() -> int:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        sockets = []

        async def open_one(token: str) -> None:
            async with limit:
                for _ in range(5):  # bounded retries of a refused connect under load
                    try:
                        ws = await websockets.connect(
                            f"{url}?token={token}", compression=None, open_timeout=60
                        )
                        await ws.send(json.dumps({"id": "hello", "type": "resume"}))
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                        if reply.get("ok"):
                            sockets.append(ws)
                        return
                    except (OSError, TimeoutError, websockets.WebSocketException):
                        await asyncio.sleep(0.5)

        await asyncio.gather(*(open_one(t) for t in tokens))
        results.put(len(sockets))
        ready.set()
        await asyncio.to_thread(release.wait, 600)  # bounded hold
        alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
        for ws in sockets:
            await ws.close()
        return alive

    results.put(("alive", asyncio.run(run())))


async def prepare(db_url: str, schema: str | None, n: int) -> list[int]:
    engine = make_engine(db_url, schema=schema)
    try:
        await migrate(engine)
        return await seed_users(engine, n)
    finally:
        await engine.dispose()


def main() -> dict:
    raise_nofile()
    n = int(os.environ.get("BENCH_CONNECTIONS", "10000"))
    processes = int(os.environ.get("BENCH_CLIENT_PROCESSES", "2"))
    with tempfile.TemporaryDirectory(prefix="dialhub-conn-") as tmp:
        work = Path(tmp)
        embedded = None
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            embedded = EmbeddedRedis(work / "redis", extra_args=("--maxclients", "10000")).start()
            redis_url = embedded.url
        configured = os.environ.get("DATABASE_URL")
        db_url = async_url(configured, work / "conn.sqlite3")
        schema = None
        if configured and not db_url.startswith("sqlite"):
            schema = f"bench_conn_{uuid.uuid4().hex[:10]}"
            asyncio.run(_schema(db_url, f'CREATE SCHEMA "{schema}"'))
        try:
            users = asyncio.run(prepare(db_url, schema, n))
            env = {k: v for k, v in os.environ.items() if not k.startswith("DIALHUB_")}
            env.update(
                REDIS_URL=redis_url,
                DATABASE_URL=configured or db_url,
                DIALHUB_SECRET_KEY=SECRET,
                DIALHUB_VAR_DIR=str(work),
            )
            if schema:
                env["DIALHUB_DB_SCHEMA"] = schema
            started = start_node(env, work)  # its stderr in work/node-<port>.log
            node, port = started.process, started.port
            try:
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                before = rss_mb(node.pid)
                tokens = [issue_token(SECRET, u, 3600).token for u in users]
                ctx = multiprocessing.get_context("spawn")
                ready = [ctx.Event() for _ in range(processes)]
                release = ctx.Event()
                results = ctx.Queue()
                workers = [
                    ctx.Process(
                        target=client_process,
                        args=(
                            f"ws://127.0.0.1:{port}/ws",
                            tokens[i::processes],
                            ready[i],
                            release,
                            results,
                        ),
                    )
                    for i in range(processes)
                ]
                started = time.monotonic()
                for worker in workers:
                    worker.start()
                for event in ready:
                    event.wait(timeout=600)
                connected = sum(results.get(timeout=10) for _ in workers)
                connect_s = time.monotonic() - started
                time.sleep(HOLD_S)
                after = rss_mb(node.pid)
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
                release.set()
                alive = sum(results.get(timeout=120)[1] for _ in workers)
                for worker in workers:
                    worker.join(timeout=60)
            finally:
                node.terminate()
                try:
                    node.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.kill()
        finally:
            if schema:
                asyncio.run(_schema(db_url, f'DROP SCHEMA "{schema}" CASCADE'))
            if embedded is not None:
                embedded.stop()
    gauge = next(
        (line for line in metrics.splitlines() if line.startswith("dialhub_ws_connections ")), ""
    )
    return {
        "bench": "connections",
        "connections": connected,
        "alive_after_hold": alive,
        "server_gauge": float(gauge.split()[-1]) if gauge else None,
        "connect_seconds": round(connect_s, 1),
        "rss_mb": round(after, 1),
        "rss_before_mb": round(before, 1),
        "kb_per_connection": round((after - before) * 1024 / max(1, connected), 1),
    }


async def _schema(db_url: str, statement: str) -> None:
    admin = make_engine(db_url)
    async with admin.begin() as conn:
        await conn.execute(text(statement))
    await admin.dispose()


if __name__ == "__main__":
    print(json.dumps(main()))
