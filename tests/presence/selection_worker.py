"""One server process of the multi-process selection test: many agents of one data owner.

Run as ``python tests/presence/selection_worker.py URL OWNER INDEX SEED SECONDS``. List agents
claim the next right customer and hold it; their colleagues refill the same hopper at the same
time; manual agents select and release random customers; a supervisor releases manual agents'
customers (by token, so never a newer selection). Prints one JSON line: what it claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time

import redis.asyncio as aioredis

from presence.keys import HopperKey
from presence.selections import (
    AlreadySelected,
    SelectionLost,
    SelectionStore,
    UserHasSelection,
)

CUSTOMERS = list(range(1, 51))
LIST_AGENTS = 20  # per process
MANUAL_AGENTS = 2  # per process
MANUAL_BASE = 900_000
HOPPER = HopperKey.of(assignment_id=1)
REFILL_THRESHOLD = 5


async def run(url: str, owner: int, index: int, seed: int, seconds: float) -> dict:
    rng = random.Random(seed * 1000 + index)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = SelectionStore(client)
    deadline = time.monotonic() + seconds
    claims: list[list[int]] = []
    tokens: list[int] = []
    manual_done = asyncio.Event()

    async def list_agent(user_id: int) -> None:
        order = CUSTOMERS[:]
        rng.shuffle(order)  # each process's dialer may see its own order: still no duplicate
        for _ in range(200):
            if time.monotonic() > deadline:
                return
            claim = await store.claim_next(owner, user_id, HOPPER)
            if claim.selection is not None:
                claims.append([claim.selection.customer_id, user_id, claim.selection.token])
                tokens.append(claim.selection.token)
                if claim.needs_refill(REFILL_THRESHOLD):
                    await store.refill(owner, HOPPER, order)
                return  # hold it to the end: a held customer must never be handed out again
            refilled = await store.refill(owner, HOPPER, order)
            if refilled.length == 0 and manual_done.is_set():
                return
            await asyncio.sleep(rng.random() * 0.002)

    async def manual_agent(user_id: int) -> None:
        for _ in range(60):
            if time.monotonic() > deadline:
                break
            try:
                selection = await store.select(owner, user_id, rng.choice(CUSTOMERS))
                tokens.append(selection.token)
            except (AlreadySelected, UserHasSelection):
                pass
            await asyncio.sleep(rng.random() * 0.002)
            await store.release_user(owner, user_id)

    async def supervisor() -> None:
        for _ in range(100):
            if time.monotonic() > deadline or manual_done.is_set():
                return
            held = await store.holder(owner, rng.choice(CUSTOMERS))
            if held is not None and held.user_id >= MANUAL_BASE:
                # By token: a newer selection of the same customer is never released.
                with contextlib.suppress(SelectionLost):
                    await store.release(
                        owner, held.customer_id, 777, token=held.token, supervisor=True
                    )
            await asyncio.sleep(rng.random() * 0.002)

    async def manuals() -> None:
        base = MANUAL_BASE + index * MANUAL_AGENTS
        await asyncio.gather(*(manual_agent(base + i) for i in range(MANUAL_AGENTS)))
        manual_done.set()

    first_user = 1000 + index * LIST_AGENTS
    await asyncio.gather(
        manuals(),
        supervisor(),
        *(list_agent(first_user + i) for i in range(LIST_AGENTS)),
    )
    await client.aclose()
    return {"index": index, "claims": claims, "tokens": tokens}


def main() -> None:
    url, owner, index, seed, seconds = sys.argv[1:6]
    result = asyncio.run(run(url, int(owner), int(index), int(seed), float(seconds)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
