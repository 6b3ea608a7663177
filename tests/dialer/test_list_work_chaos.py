"""Rules 4, 8 and 12 across OS processes while Redis is emptied under their feet.

Two server processes (tests/dialer/chaos_worker.py) share one private Redis and the run's
database: list agents claim, attempt and sell; manual agents select and release; supervisors
release colleagues; one process FLUSHALLs the Redis three times. While they run, this process
checks the live state over and over; afterwards it checks every write in the history and works
the list to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from list_work import ListWork, Stack
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_list_work import FAST, db_holders, sell

from domain.db import tables as t
from domain.db.repositories import list_history
from domain.model import HistoryKind

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("chaos_worker.py")
PROCESSES = 2
LIST_AGENTS = 12  # per process
MANUAL_AGENTS = 3  # per process
SECONDS = 8
c = t.customers.c


async def check_live_state(engine: AsyncEngine, stack: Stack, work: ListWork) -> int:
    """Rule 4 as both stores see it right now: one holder per customer, one customer per user."""
    live = await stack.store.snapshot(work.owner)
    assert len({s.customer_id for s in live}) == len(live)
    assert len({s.user_id for s in live}) == len(live), "a user holds two customers in Redis"
    async with engine.connect() as conn:
        doubles = (
            await conn.execute(
                select(c.holder_user_id)
                .where(c.data_owner_id == work.owner, c.holder_user_id.isnot(None))
                .group_by(c.holder_user_id)
                .having(func.count() > 1)
            )
        ).all()
    assert doubles == [], "a user holds two customers in the database"
    return len(live)


async def test_rule_04_08_12_hold_across_processes_and_redis_losses(
    engine: AsyncEngine,
    database: dict[str, Any],
    private_redis_url: str,
    private_stack: Stack,
    new_list: Any,
) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    agents_per_process = LIST_AGENTS + MANUAL_AGENTS
    work = await new_list(n=150, agents=PROCESSES * agents_per_process + 1, setup=FAST)
    drainer = work.agents[-1].id
    specs = []
    for index in range(PROCESSES):
        mine = [
            a.id for a in work.agents[index * agents_per_process : (index + 1) * agents_per_process]
        ]
        specs.append(
            {
                "seed": seed + index,
                "database_url": database["url"],
                "schema": database["schema"],
                "redis_url": private_redis_url,
                "owner": work.owner,
                "assignment_id": work.assignment_id,
                "customers": work.customer_ids,
                "list_agents": mine[:LIST_AGENTS],
                "manual_agents": mine[LIST_AGENTS:],
                "supervisor": work.supervisor.id,
                "seconds": SECONDS,
                "flushes": 3 if index == 0 else 0,
            }
        )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            json.dumps(spec),
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for spec in specs
    ]
    waiting = [asyncio.ensure_future(p.communicate()) for p in processes]
    checks = 0
    deadline = time.monotonic() + SECONDS + 90
    while not all(w.done() for w in waiting) and time.monotonic() < deadline:
        await check_live_state(engine, private_stack, work)
        checks += 1
        await asyncio.sleep(0.05)
    outputs = await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)
    results = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-4000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    summary = {
        k: sum(r[k] for r in results)
        for k in ("stale_refused", "flushes", "sold", "expected_errors")
    }
    handed = [h for r in results for h in r["handed"]]
    writes = [w for r in results for w in r["writes"]]
    print(f"checks={checks} handed={len(handed)} writes={len(writes)} {summary}")
    assert checks > 10 and summary["flushes"] == 3 and summary["stale_refused"] > 0
    assert [s for r in results for s in r["stale_accepted"]] == []

    # Rule 8 from the record: every accepted write came from a live selection of its writer:
    # recorded as selected by that user with that token, and not yet released before the write.
    tokens = [h[2] for h in handed]
    assert len(tokens) == len(set(tokens)), "a token was handed out twice"
    async with engine.connect() as conn:
        for customer_id in work.customer_ids:
            live: dict[int, int] = {}  # token -> holder, while selected
            for event in await list_history(conn, customer_id):
                token = event.data.get("token")
                if event.kind is HistoryKind.SELECTED:
                    live[token] = event.user_id
                elif event.kind is HistoryKind.RELEASED:
                    live.pop(token, None)
                elif event.kind is HistoryKind.ATTEMPT:
                    assert live.get(token) == event.user_id, (
                        f"customer {customer_id}: write with token {token} by user "
                        f"{event.user_id} outside its selection"
                    )

    # Rule 12: every customer still in play is handed out in the end, and nothing stays held.
    await check_live_state(engine, private_stack, work)
    sold_before = set()
    async with engine.connect() as conn:
        sold_before = set(
            (
                await conn.execute(
                    select(c.id).where(c.data_owner_id == work.owner, c.status == "sale")
                )
            )
            .scalars()
            .all()
        )
    assert len(sold_before) == summary["sold"]  # every sale counted once: nobody sold twice
    drained: Counter[int] = Counter()
    selection = await private_stack.dialer.claim(work.owner, drainer, work.assignment_id)
    for _ in range(len(work.customer_ids) + 1):
        if selection is None:
            break
        drained[selection.customer_id] += 1
        await sell(engine, selection)
        selection = await private_stack.dialer.next(work.owner, drainer, work.assignment_id)
    assert max(drained.values(), default=1) == 1
    assert set(drained) == set(work.customer_ids) - sold_before
    assert await db_holders(engine, work) == {}
    assert await private_stack.store.snapshot(work.owner) == []
