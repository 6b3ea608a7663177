"""Seeding throughput on PostgreSQL: `python bench/seed.py`.

Seeds BENCH_SEED_CUSTOMERS customers (default 1,000,000) with domain.db.seed.seed_customers into
a fresh schema of DATABASE_URL (dropped afterwards), and, as a same-run baseline, times a bare
asyncpg COPY of as many minimal rows into a temporary table. The last output line is JSON:
{"bench": "seed", "customers": N, "seconds": .., "rows_per_s": .., "baseline_copy_rows_per_s": ..}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from domain.db.engine import async_url, make_engine, migrate
from domain.db.seed import seed_customers, seed_demo

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def baseline_copy(url: str, schema: str, n: int) -> float:
    """Rows per second of a bare asyncpg COPY of n minimal rows into a temp table."""
    engine = make_engine(url, schema=schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TEMP TABLE baseline (id bigint, name text, phones jsonb)")
            )
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            records = [(i, f"Customer {i}", '["+4790000000"]') for i in range(n)]
            started = time.perf_counter()
            await driver.copy_records_to_table(
                "baseline", records=records, columns=("id", "name", "phones")
            )
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return n / seconds


async def main() -> dict[str, object]:
    n = int(os.environ.get("BENCH_SEED_CUSTOMERS", "1000000"))
    url = async_url(os.environ.get("DATABASE_URL") or DEFAULT_URL, Path("var/bench.sqlite3"))
    if url.startswith("sqlite"):
        raise SystemExit("bench/seed.py measures PostgreSQL: set DATABASE_URL to one")
    schema = f"bench_seed_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, schema=schema)
    try:
        await migrate(engine)
        await seed_demo(engine)

        def progress(done: int) -> None:
            print(f"seeded {done:>9,} / {n:,}", file=sys.stderr, flush=True)

        started = time.perf_counter()
        await seed_customers(engine, n, progress=progress)
        seconds = time.perf_counter() - started
        baseline = await baseline_copy(url, schema, n)
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    return {
        "bench": "seed",
        "customers": n,
        "seconds": round(seconds, 2),
        "rows_per_s": round(n / seconds),
        "baseline_copy_rows_per_s": round(baseline),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
