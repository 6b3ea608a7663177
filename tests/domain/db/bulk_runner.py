"""Runs one bulk job as a separate process, slowly, so a test can SIGKILL it mid-way.

    python bulk_runner.py URL SCHEMA REDIS_URL JOB_ID BATCH PAUSE LEASE

Prints "batch <processed>" after every committed batch. Each batch pauses PAUSE seconds while
its customers are locked (inside the Redis selection check), so a kill lands inside an open
transaction.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import redis.asyncio as aioredis

from domain.db.bulk import run_bulk_job
from domain.db.engine import make_engine
from domain.db.jobs import JobProgress
from presence.selections import SelectionStore


class SlowStore:
    def __init__(self, store: SelectionStore, pause: float) -> None:
        self.store = store
        self.pause = pause

    async def selected_among(self, owner: int, customer_ids: Iterable[int]) -> dict[int, int]:
        found = await self.store.selected_among(owner, customer_ids)
        await asyncio.sleep(self.pause)
        return found


async def main() -> None:
    url, schema, redis_url, job_id, batch, pause, lease = sys.argv[1:8]
    engine = make_engine(url, schema=schema or None)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    def progress(p: JobProgress) -> None:
        print(f"batch {p.processed}", flush=True)

    try:
        await run_bulk_job(
            engine,
            int(job_id),
            selections=SlowStore(SelectionStore(client), float(pause)),
            on_progress=progress,
            batch_size=int(batch),
            lease=timedelta(seconds=float(lease)),
        )
        print("done", flush=True)
    finally:
        await client.aclose()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
