"""Bulk work throughput: `python bench/bulk.py`.

Seeds BENCH_BULK_CUSTOMERS customers (default 1,000,000) with domain.db.seed.seed_customers
into a fresh schema of DATABASE_URL (dropped afterwards), then times, each on
BENCH_BULK_N customers (default 100,000) in batches of BENCH_BULK_BATCH (default 1,000): a
mass outcome, a bulk move to another assignment of the same CRM, and an import of an xlsx file
of as many rows (reading and checking the file included). Selections are checked on
REDIS_URL when it is set. Without DATABASE_URL it runs on a SQLite file and says so.

As a same-run baseline it times a bare UPDATE of the mass outcome's customers (their status,
in the same batches, a transaction each, no checks, history or Redis): what the database alone
takes to change those rows on this machine at this moment. The last output line is JSON:
{"bench": "bulk", "database": .., "customers": N, "n": .., "batch": .., "outcome_per_s": ..,
 "move_per_s": .., "import_rows_per_s": .., "baseline_update_per_s": ..}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text

from domain.db import demo
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import create_mass_outcome_job, create_move_job, run_bulk_job
from domain.db.engine import async_url, make_engine, migrate
from domain.db.imports import create_import_job, read_table
from domain.db.seed import seed_customers
from domain.model import Role


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_xlsx(path: Path, external_ids: list[str]) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["Kundeid", "Fødselsår", "Kommune", "Solceller"])
    for i, external_id in enumerate(external_ids):
        sheet.append([external_id, 1950 + i % 50, "Bodø", i % 3 == 0])
    book.save(path)


async def bare_update(engine: Any, ids: list[int], batch: int) -> float:
    """Seconds to set the status of `ids` with plain UPDATEs, a transaction per batch."""
    c = t.customers.c
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        async with engine.begin() as conn:
            await conn.execute(
                t.customers.update()
                .where(c.id.in_(ids[start : start + batch]))
                .values(status="wrong_number", updated_at=repo.utcnow(), version=c.version + 1)
            )
    return time.perf_counter() - started


async def main() -> dict[str, Any]:
    total = int(os.environ.get("BENCH_BULK_CUSTOMERS", "1000000"))
    n = int(os.environ.get("BENCH_BULK_N", "100000"))
    batch = int(os.environ.get("BENCH_BULK_BATCH", "1000"))
    configured = os.environ.get("DATABASE_URL")
    work = Path(tempfile.mkdtemp(prefix="dialhub-bench-"))
    url = async_url(configured, work / "bench.sqlite3")
    schema = None if url.startswith("sqlite") else f"bench_bulk_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    if schema:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, schema=schema)
    store, client = None, None
    if os.environ.get("REDIS_URL"):
        import redis.asyncio as aioredis

        from presence.selections import SelectionStore

        client = aioredis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
        store = SelectionStore(client)
    try:
        await migrate(engine)
        started = time.perf_counter()
        await seed_customers(
            engine, total, progress=lambda done: log(f"seeded {done:>9,} / {total:,}")
        )
        log(f"seeded in {time.perf_counter() - started:.1f} s")
        async with engine.begin() as conn:
            owner = await repo.get_data_owner_by_name(conn, demo.NORDLYS)
            assert owner is not None
            rows = (
                await conn.execute(
                    select(t.assignments.c.id, t.assignments.c.name, t.assignments.c.crm_id).where(
                        t.assignments.c.data_owner_id == owner.id
                    )
                )
            ).all()
            source = next(r for r in rows if r.name == demo.FIXED_PRICE)
            target = next(
                r for r in rows if r.name != demo.FIXED_PRICE and r.crm_id == source.crm_id
            )
            user = await repo.create_user(
                conn,
                owner.id,
                f"bench-{uuid.uuid4().hex[:6]}",
                "Bench",
                Role.ADMIN,
                "",
                password_hash="x",
            )
            ids = list(
                (
                    await conn.execute(
                        select(t.customers.c.id)
                        .where(
                            t.customers.c.assignment_id == source.id,
                            t.customers.c.status == "available",
                        )
                        .order_by(t.customers.c.id)
                        .limit(2 * n)
                    )
                ).scalars()
            )
        if len(ids) < 2 * n:
            raise SystemExit(f"only {len(ids)} available customers; raise BENCH_BULK_CUSTOMERS")
        first, second = ids[:n], ids[n:]
        # Mark the two sets by attempt count (not timed), so each job runs on a plain filter.
        async with engine.begin() as conn:
            for attempts, chunk_ids in ((3, first), (4, second)):
                for start in range(0, n, 10_000):
                    await conn.execute(
                        t.customers.update()
                        .where(t.customers.c.id.in_(chunk_ids[start : start + 10_000]))
                        .values(attempts=attempts)
                    )
        outcome_filter = {
            "assignment_id": source.id,
            "statuses": ["available"],
            "attempts": {"min": 3, "max": 3},
        }
        move_filter = {
            "assignment_id": source.id,
            "statuses": ["available"],
            "attempts": {"min": 4, "max": 4},
        }

        async def timed(job_id: int) -> tuple[float, int]:
            started = time.perf_counter()
            done = await run_bulk_job(
                engine,
                job_id,
                selections=store,
                batch_size=batch,
                on_progress=lambda p: log(f"  {p.kind}: {p.processed:,} / {p.expected:,}"),
            )
            seconds = time.perf_counter() - started
            assert done.report is not None, done.error
            log(f"  {done.report['summary']} in {seconds:.2f} s")
            return seconds, int(done.report["matched"])

        async with engine.begin() as conn:
            job = await create_mass_outcome_job(
                conn, user, outcome_filter, "wrong_number", {}, repo.utcnow()
            )
        outcome_s, outcome_n = await timed(job.id)
        baseline_s = await bare_update(engine, first, batch)
        log(f"  baseline: bare UPDATE of {n:,} customers in {baseline_s:.2f} s")
        async with engine.begin() as conn:
            job = await create_move_job(
                conn, user, move_filter, repo.utcnow(), to_assignment_id=target.id
            )
        move_s, move_n = await timed(job.id)

        async with engine.connect() as conn:
            external_ids = list(
                (
                    await conn.execute(
                        select(t.customers.c.external_id)
                        .where(t.customers.c.crm_id == source.crm_id)
                        .order_by(t.customers.c.id.desc())
                        .limit(n)
                    )
                ).scalars()
            )
        path = work / "import.xlsx"
        await asyncio.to_thread(write_xlsx, path, external_ids)
        log(f"wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB, {len(external_ids):,} rows)")
        started = time.perf_counter()
        table = await asyncio.to_thread(read_table, path)
        mapping = {
            "Kundeid": "external_id",
            "Fødselsår": "birth_year",
            "Kommune": "municipality",
            "Solceller": "has_solar",
        }
        async with engine.begin() as conn:
            job = await create_import_job(
                conn, user, source.crm_id, table, mapping, repo.utcnow(), file_name=path.name
            )
        log(f"  read and staged in {time.perf_counter() - started:.2f} s")
        await timed(job.id)
        import_s = time.perf_counter() - started
    finally:
        await engine.dispose()
        if schema:
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
        if client is not None:
            await client.aclose()
    return {
        "bench": "bulk",
        "database": "postgresql" if schema else "sqlite (DATABASE_URL unset)",
        "customers": total,
        "n": n,
        "batch": batch,
        "outcome_per_s": round(outcome_n / outcome_s),
        "move_per_s": round(move_n / move_s),
        "import_rows_per_s": round(n / import_s),
        "baseline_update_per_s": round(n / baseline_s),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
