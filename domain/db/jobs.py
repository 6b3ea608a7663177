"""Bulk jobs in the database: batched, resumable after a crash, with progress (rule 21).

A job row holds its parameters, a cursor, running tallies and, once done, its report. A node
runs a job while it holds the job's lease. Every batch is one transaction that renews the lease
(refused if another node took the job over), changes its customers and advances the cursor, so
a batch is applied exactly once: a node that dies loses only an uncommitted batch, and when its
lease has run out any node resumes from the committed cursor.
"""

from __future__ import annotations

import inspect
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bulk import BulkReport, JobKind, JobStatus
from domain.db import tables as t
from domain.db.repositories import utcnow
from domain.errors import DomainError, NotFound
from domain.model import Role

j = t.bulk_jobs.c

DEFAULT_BATCH = 1000
DEFAULT_LEASE = timedelta(seconds=30)


class JobBusy(DomainError):
    """Another node holds the job's lease; it runs the job (or its lease will run out)."""

    code = "job_busy"


class LeaseLost(JobBusy):
    """This node's lease ran out and another node took the job over: stop, it goes on there."""


class SelectionProbe(Protocol):
    """Who holds which customers right now (presence.selections.SelectionStore has this)."""

    async def selected_among(self, owner: int, customer_ids: Iterable[int]) -> dict[int, int]: ...


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    data_owner_id: int
    kind: JobKind
    status: JobStatus
    params: Mapping[str, Any]
    created_by: int
    cursor: int
    expected: int
    counts: Mapping[str, int]
    report: Mapping[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A job's state after a batch: what the supervisor's page and the CLI's bar show."""

    job_id: int
    kind: JobKind
    status: JobStatus
    processed: int
    expected: int
    counts: Mapping[str, int]
    report: Mapping[str, Any] | None = None

    @property
    def fraction(self) -> float:
        if self.status is JobStatus.DONE:
            return 1.0
        return min(1.0, self.processed / self.expected) if self.expected else 0.0


@dataclass(frozen=True, slots=True)
class Step:
    """One batch: the new cursor, tally increments, and whether the job is through."""

    cursor: int
    counts: Mapping[str, int] = field(default_factory=dict)
    finished: bool = False


class Executor(Protocol):
    """What a kind of job does, one batch at a time, inside the batch's transaction."""

    async def step(self, conn: AsyncConnection, job: Job, limit: int, now: datetime) -> Step: ...

    def report(self, counts: Mapping[str, int]) -> BulkReport: ...


Loader = Callable[[AsyncConnection, Job], Awaitable[Executor]]
ProgressHook = Callable[[JobProgress], Any]


def new_node_id() -> str:
    return secrets.token_hex(8)


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        data_owner_id=row.data_owner_id,
        kind=JobKind(row.kind),
        status=JobStatus(row.status),
        params=dict(row.params or {}),
        created_by=row.created_by,
        cursor=int(row.cursor),
        expected=int(row.expected),
        counts=dict(row.counts or {}),
        report=dict(row.report) if row.report is not None else None,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def progress_of(job: Job) -> JobProgress:
    return JobProgress(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        processed=int(job.counts.get("matched", 0)),
        expected=job.expected,
        counts=dict(job.counts),
        report=job.report,
    )


async def create_job(
    conn: AsyncConnection,
    *,
    data_owner_id: int,
    kind: JobKind,
    params: Mapping[str, Any],
    created_by: int,
    expected: int,
    now: datetime,
) -> Job:
    """A pending job; it runs when a node calls run_job (or resumes it)."""
    row = (
        await conn.execute(
            insert(t.bulk_jobs)
            .values(
                data_owner_id=data_owner_id,
                kind=kind.value,
                status=JobStatus.PENDING.value,
                params=dict(params),
                created_by=created_by,
                created_at=now,
                updated_at=now,
                cursor=0,
                expected=expected,
                counts={},
            )
            .returning(*t.bulk_jobs.c)
        )
    ).one()
    return _job(row)


async def get_job(
    conn: AsyncConnection, job_id: int, *, data_owner_id: int | None = None
) -> Job | None:
    query = select(t.bulk_jobs).where(j.id == job_id)
    if data_owner_id is not None:
        query = query.where(j.data_owner_id == data_owner_id)
    row = (await conn.execute(query)).first()
    return _job(row) if row else None


def assignment_of(job: Job) -> int | None:
    """The assignment a job works on: its filter's (mass outcome, move). An import updates a
    CRM's cards wherever they are, so it has none."""
    found = (job.params.get("filter") or {}).get("assignment_id")
    return None if found is None else int(found)


async def list_jobs(conn: AsyncConnection, data_owner_id: int, *, limit: int = 500) -> list[Job]:
    """The data owner's most recent jobs, newest first."""
    rows = await conn.execute(
        select(t.bulk_jobs)
        .where(j.data_owner_id == data_owner_id)
        .order_by(j.id.desc())
        .limit(limit)
    )
    return [_job(row) for row in rows]


async def job_audience(conn: AsyncConnection, job: Job) -> list[int]:
    """Who may follow a job (rule 3): the data owner's administrators, and for a job on an
    assignment the supervisors granted it."""
    u = t.users.c
    query = select(u.id).where(u.data_owner_id == job.data_owner_id, u.active.is_(True))
    admins = u.role == Role.ADMIN.value
    assignment_id = assignment_of(job)
    if assignment_id is None:
        query = query.where(admins)
    else:
        granted = select(t.grants.c.user_id).where(t.grants.c.assignment_id == assignment_id)
        query = query.where(or_(admins, (u.role == Role.SUPERVISOR.value) & u.id.in_(granted)))
    return [r[0] for r in await conn.execute(query.order_by(u.id))]


async def release_lease(engine: AsyncEngine, job_id: int, node: str, now: datetime) -> bool:
    """Hand a running job back between two batches (its node is stopping): pending again, so
    any node resumes it at once instead of after the lease runs out."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(t.bulk_jobs)
            .where(j.id == job_id, j.lease_owner == node, j.status == JobStatus.RUNNING.value)
            .values(
                status=JobStatus.PENDING.value, lease_owner=None, lease_until=None, updated_at=now
            )
        )
    return bool(done.rowcount)


async def resumable_jobs(conn: AsyncConnection, now: datetime) -> list[int]:
    """Jobs nobody runs: pending ones, and running ones whose node's lease ran out."""
    rows = await conn.execute(
        select(j.id)
        .where(
            or_(
                j.status == JobStatus.PENDING.value,
                (j.status == JobStatus.RUNNING.value) & (j.lease_until < now),
            )
        )
        .order_by(j.id)
    )
    return [r[0] for r in rows]


async def claim(
    engine: AsyncEngine, job_id: int, node: str, now: datetime, lease: timedelta
) -> Job:
    """Take the job's lease: free, ours already, or run out. A finished job comes back as is;
    a job another node holds raises JobBusy."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(t.bulk_jobs)
                .where(
                    j.id == job_id,
                    j.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
                    or_(j.lease_owner.is_(None), j.lease_owner == node, j.lease_until < now),
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    lease_owner=node,
                    lease_until=now + lease,
                    updated_at=now,
                )
                .returning(*t.bulk_jobs.c)
            )
        ).first()
        if row is not None:
            return _job(row)
        job = await get_job(conn, job_id)
    if job is None:
        raise NotFound("no such job")
    if job.status in (JobStatus.DONE, JobStatus.FAILED):
        return job
    raise JobBusy(f"job {job_id} is being run by another node")


async def _hold(
    conn: AsyncConnection, job_id: int, node: str, now: datetime, lease: timedelta
) -> Job:
    # First statement of the batch: renews the lease and locks the job row (on SQLite it also
    # takes the write lock), so two nodes never run a batch of one job at the same time.
    row = (
        await conn.execute(
            update(t.bulk_jobs)
            .where(j.id == job_id, j.lease_owner == node, j.status == JobStatus.RUNNING.value)
            .values(lease_until=now + lease, updated_at=now)
            .returning(*t.bulk_jobs.c)
        )
    ).first()
    if row is None:
        raise LeaseLost(f"job {job_id} was taken over by another node")
    return _job(row)


async def run_job(
    engine: AsyncEngine,
    job_id: int,
    load: Loader,
    *,
    node: str | None = None,
    on_progress: ProgressHook | None = None,
    batch_size: int = DEFAULT_BATCH,
    lease: timedelta = DEFAULT_LEASE,
    clock: Callable[[], datetime] = utcnow,
) -> Job:
    """Run (or resume) a job to its end, a batch per transaction; `on_progress(JobProgress)`
    (plain or async) after each batch. Returns the finished job with its report."""
    node = node or new_node_id()
    job = await claim(engine, job_id, node, clock(), lease)
    if job.status in (JobStatus.DONE, JobStatus.FAILED):
        return job
    try:
        async with engine.connect() as conn:
            executor = await load(conn, job)
    except DomainError as error:
        # Refused before its first batch (its user, assignment or flow is gone): it would be
        # refused again on every resume, so it ends here with the reason.
        job = await _fail(engine, job.id, node, error.message, clock())
        await _emit(on_progress, progress_of(job))
        raise
    await _emit(on_progress, progress_of(job))
    while job.status is JobStatus.RUNNING:
        now = clock()
        try:
            async with engine.begin() as conn:
                job = await _hold(conn, job.id, node, now, lease)
                step = await executor.step(conn, job, batch_size, now)
                counts = Counter(job.counts)
                counts.update(step.counts)
                values: dict[str, Any] = {"cursor": step.cursor, "counts": dict(counts)}
                if step.finished:
                    values.update(
                        status=JobStatus.DONE.value,
                        report=executor.report(counts).to_json(),
                        finished_at=now,
                        lease_owner=None,
                        lease_until=None,
                    )
                row = (
                    await conn.execute(
                        update(t.bulk_jobs)
                        .where(j.id == job.id)
                        .values(**values)
                        .returning(*t.bulk_jobs.c)
                    )
                ).one()
                job = _job(row)
        except LeaseLost:
            raise
        except DomainError as error:
            # A refusal (the assignment or its flow changed under the job): nothing of this
            # batch is applied; the job stops with the reason, earlier batches stand.
            job = await _fail(engine, job.id, node, error.message, now)
            await _emit(on_progress, progress_of(job))
            raise
        await _emit(on_progress, progress_of(job))
    return job


async def _fail(engine: AsyncEngine, job_id: int, node: str, error: str, now: datetime) -> Job:
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(t.bulk_jobs)
                .where(j.id == job_id, j.lease_owner == node)
                .values(
                    status=JobStatus.FAILED.value,
                    error=error[:2000],
                    finished_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(*t.bulk_jobs.c)
            )
        ).first()
        if row is None:
            job = await get_job(conn, job_id)
            assert job is not None
            return job
        return _job(row)


async def _emit(hook: ProgressHook | None, progress: JobProgress) -> None:
    if hook is None:
        return
    result = hook(progress)
    if inspect.isawaitable(result):
        await result


async def progress_stream(run: Callable[[ProgressHook], Awaitable[Job]]) -> AsyncIterator[Any]:
    """The progress of `run(on_progress)` as an async iterator of JobProgress, ending with it;
    an error of the run is raised to the reader."""
    import asyncio

    queue: asyncio.Queue[JobProgress | None] = asyncio.Queue()
    task = asyncio.create_task(run(queue.put))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    while (item := await queue.get()) is not None:
        yield item
    await task
