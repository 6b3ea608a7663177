"""One server process of the list-work chaos test: agents, a supervisor and Redis losses.

Run as ``python tests/dialer/chaos_worker.py SPEC_JSON``. Its agents claim the next right
customer, attempt or sell it through fenced writes, select customers by hand and release them;
its supervisor releases colleagues' selections; a flusher (only where the spec says so) empties
the whole Redis now and then. After every selection ends, the screen that held it tries to write
with its old token and must be refused. Every loop is bounded in count and time. Prints one JSON
line: what was handed out, every write the database accepted, every stale write it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dialer.hopper import Hopper
from dialer.next_customer import NextCustomer
from domain.db import fencing
from domain.db.engine import make_engine
from domain.db.outcomes import Outcomes
from domain.errors import AlreadySelected, SelectionLost, UserHasSelection
from domain.model import AttemptKind
from presence.selections import NotHolder, Selection, SelectionStore, StoreNotReady
from presence.service import SelectionService

EXPECTED = (AlreadySelected, UserHasSelection, SelectionLost, NotHolder, StoreNotReady)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    rng = random.Random(spec["seed"])
    engine = make_engine(spec["database_url"], schema=spec["schema"], pool_size=20)
    client = aioredis.Redis.from_url(spec["redis_url"], decode_responses=True, max_connections=200)
    store = SelectionStore(client)
    selections = SelectionService(engine, store)
    dialer = NextCustomer(engine, selections, Hopper(engine, store, batch=25, low_water=10))
    outcomes = Outcomes(engine)
    owner, assignment = spec["owner"], spec["assignment_id"]
    customers: list[int] = spec["customers"]
    deadline = time.monotonic() + spec["seconds"]
    handed: list[list[int]] = []
    writes: list[list[Any]] = []
    stale_accepted: list[list[int]] = []
    counts = {"stale_refused": 0, "flushes": 0, "expected_errors": 0, "sold": 0}

    async def write(selection: Selection, sell: bool) -> bool:
        """A fenced holder's write; True when the database accepted it."""
        holding = fencing.Holding(selection.customer_id, selection.user_id, selection.token)
        try:
            if sell:  # saved together with the other agents' outcomes (a group commit)
                await outcomes.save(fencing.OutcomeAsk(holding, "sale", {}, datetime.now(UTC)))
            else:
                async with engine.begin() as conn:
                    await fencing.record_attempt(
                        conn, holding, AttemptKind.NO_ANSWER, datetime.now(UTC)
                    )
        except SelectionLost:
            return False
        writes.append([selection.customer_id, selection.user_id, selection.token, int(sell)])
        return True

    async def try_stale(selection: Selection) -> None:
        """Rule 8: the screen of an ended selection writes; it must be refused."""
        if await write(selection, sell=False):
            current = await store.holder(owner, selection.customer_id)
            if current is None or current.token != selection.token:
                stale_accepted.append([selection.customer_id, selection.user_id, selection.token])
        else:
            counts["stale_refused"] += 1

    async def list_agent(user_id: int) -> None:
        selection: Selection | None = None
        for _ in range(400):
            if time.monotonic() > deadline:
                break
            try:
                if selection is None:
                    selection = await dialer.claim(owner, user_id, assignment)
                    if selection is None:
                        await asyncio.sleep(0.01)
                        continue
                    handed.append([selection.customer_id, user_id, selection.token])
                sell = rng.random() < 0.35
                if not await write(selection, sell):
                    selection = None  # released by a supervisor or lost: take the next
                    continue
                if sell:
                    counts["sold"] += 1
                old = selection
                selection = await dialer.next(owner, user_id, assignment)
                await try_stale(old)
                if selection is not None:
                    handed.append([selection.customer_id, user_id, selection.token])
            except EXPECTED:
                counts["expected_errors"] += 1
                selection = await selections.current(owner, user_id)
            await asyncio.sleep(rng.random() * 0.003)
        with contextlib.suppress(*EXPECTED):
            await selections.release_user(owner, user_id)

    async def manual_agent(user_id: int) -> None:
        for _ in range(200):
            if time.monotonic() > deadline:
                break
            try:
                selection = await selections.select(owner, user_id, rng.choice(customers))
                await asyncio.sleep(rng.random() * 0.003)
                await write(selection, sell=False)
                await selections.release_user(owner, user_id)
                await try_stale(selection)
            except EXPECTED:
                counts["expected_errors"] += 1
                with contextlib.suppress(*EXPECTED):
                    await selections.release_user(owner, user_id)
        with contextlib.suppress(*EXPECTED):
            await selections.release_user(owner, user_id)

    async def supervisor(user_id: int) -> None:
        for _ in range(400):
            if time.monotonic() > deadline:
                return
            with contextlib.suppress(*EXPECTED):
                held = await store.holder(owner, rng.choice(customers))
                if held is not None:
                    await selections.release(
                        owner, held.customer_id, user_id, token=held.token, supervisor=True
                    )
            await asyncio.sleep(0.005 + rng.random() * 0.01)

    async def flusher() -> None:
        for _ in range(spec["flushes"]):
            await asyncio.sleep(spec["seconds"] / (spec["flushes"] + 1))
            if time.monotonic() > deadline:
                return
            await client.flushall()
            counts["flushes"] += 1

    tasks = [list_agent(u) for u in spec["list_agents"]]
    tasks += [manual_agent(u) for u in spec["manual_agents"]]
    tasks.append(supervisor(spec["supervisor"]))
    if spec["flushes"]:
        tasks.append(flusher())
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=spec["seconds"] + 60)
        await dialer.hopper.drain()
    finally:
        await client.aclose()
        await engine.dispose()
    return {
        "handed": handed,
        "writes": writes,
        "stale_accepted": stale_accepted,
        **counts,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
