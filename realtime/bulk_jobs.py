"""Bulk jobs on a node (rules 19-22): the ones started from the supervisor's page run here in the
background, and every node looks now and then for jobs nobody runs (pending, or their node died
and its lease ran out) and resumes them from their cursor. After each batch the job's progress
goes to the supervisors who follow it, on whatever node they are connected to.

Running, resuming and the lease are domain.db.jobs / domain.db.bulk; this module only decides
when a node runs a job and who hears about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.bulk import JobStatus
from domain.db import bulk
from domain.db import repositories as repo
from domain.db.jobs import (
    Job,
    JobBusy,
    JobProgress,
    assignment_of,
    get_job,
    job_audience,
    new_node_id,
    progress_of,
    release_lease,
    resumable_jobs,
)
from domain.db.screens import sid
from domain.errors import DomainError
from domain.times import iso
from presence.agents import epoch_ms, watchers_key
from realtime.protocol import event
from realtime.services import Services

log = logging.getLogger(__name__)

CONCURRENT_JOBS = 2
"""Jobs one node runs at once; the rest wait their turn (their customers are not locked yet)."""
PROGRESS_GAP_S = 0.25
"""At most this often a `bulk.progress` per job; the first and the last are always sent."""
STOP_TIMEOUT_S = 6.0


# Wire shapes ----------------------------------------------------------------------------------


class JobRef(BaseModel):
    job_id: str
    kind: Literal["outcome", "move", "import"]
    status: Literal["pending", "running", "done", "failed"]
    assignment_id: str | None = Field(description="the filter's assignment; null for an import")
    processed: int = Field(description="customers (import: rows) done so far")
    expected: int = Field(description="customers the filter matched when the job was made")
    percent: int = Field(ge=0, le=100)
    counts: dict[str, int] = Field(description="running tallies: matched, changed, skipped_...")


@event("bulk.progress")
class BulkProgress(JobRef):
    """To the supervisors following the job (bulk.jobs), after its batches: how far it is."""


@event("bulk.finished")
class BulkFinished(JobRef):
    """To the supervisors following the job: it ended, with its report (rule 21) or its error."""

    report: dict[str, Any] | None = Field(
        description="matched, changed, skipped (by reason), summary, ...; null when it failed"
    )
    error: str | None = None


def percent(processed: int, expected: int, status: JobStatus) -> int:
    if status is JobStatus.DONE:
        return 100
    return min(100, processed * 100 // expected) if expected else 0


def job_ref(job: Job, progress: JobProgress | None = None) -> dict[str, Any]:
    p = progress or progress_of(job)
    return {
        "job_id": str(job.id),
        "kind": job.kind.value,
        "status": p.status.value,
        "assignment_id": sid(assignment_of(job)),
        "processed": p.processed,
        "expected": p.expected,
        "percent": percent(p.processed, p.expected, p.status),
        "counts": {k: int(v) for k, v in p.counts.items()},
    }


def job_row(job: Job, names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """A job as `bulk.jobs` and `bulk.job` answer it."""
    params = job.params
    return {
        **job_ref(job),
        "created_by": {"id": str(job.created_by), "name": (names or {}).get(job.created_by)},
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "outcome": params.get("outcome"),
        "details": params.get("details"),
        "to_segment_id": sid(params.get("to_segment_id")),
        "to_assignment_id": sid(params.get("to_assignment_id")),
        "file": params.get("file"),
        "report": job.report,
        "error": job.error,
    }


# Publishing -----------------------------------------------------------------------------------


class _Stopping(Exception):
    """The node is stopping: leave the job between two batches."""


class ProgressPublisher:
    """The on_progress hook of one run: `bulk.progress` / `bulk.finished` to the users who may
    see the job (job_audience) and follow bulk work now (the owner's watchers)."""

    def __init__(self, services: Services, job: Job, stopping: asyncio.Event) -> None:
        self.services = services
        self.job = job
        self.stopping = stopping
        self.audience: list[int] | None = None
        self.sent_at = 0.0

    async def __call__(self, progress: JobProgress) -> None:
        final = progress.status in (JobStatus.DONE, JobStatus.FAILED)
        now = time.monotonic()
        if final or now - self.sent_at >= PROGRESS_GAP_S:
            self.sent_at = now
            try:
                await self.publish(progress)
            except Exception:  # Redis away: the job goes on; bulk.jobs tells the state later
                log.exception("publishing the progress of job %s failed", self.job.id)
        if not final and self.stopping.is_set():
            raise _Stopping

    async def publish(self, progress: JobProgress) -> None:
        owner = self.job.data_owner_id
        if self.audience is None:
            async with self.services.engine.connect() as conn:
                self.audience = await job_audience(conn, self.job)
        users = await following(self.services, owner, self.audience)
        if not users:
            return
        data = job_ref(self.job, progress)
        if progress.status is JobStatus.DONE:
            data.update(report=dict(progress.report or {}), error=None)
            await self.services.events.to_users(owner, users, "bulk.finished", data)
        elif progress.status is JobStatus.FAILED:
            async with self.services.engine.connect() as conn:
                failed = await get_job(conn, self.job.id)
            data.update(report=None, error=failed.error if failed else None)
            await self.services.events.to_users(owner, users, "bulk.finished", data)
        else:
            await self.services.events.to_users(owner, users, "bulk.progress", data)


async def following(services: Services, owner: int, audience: Iterable[int]) -> list[int]:
    """Those of `audience` with a watching connection now (bulk.jobs, selected.watch or
    presence.watch put them in the owner's watcher set, which their nodes renew)."""
    watching = await services.redis.zrangebyscore(watchers_key(owner), epoch_ms(), "+inf")
    live = {int(w) for w in watching}
    return [u for u in audience if u in live]


# The runner -----------------------------------------------------------------------------------


class JobRunner:
    """Runs bulk jobs in the node's background: those started here at once (`submit`), and
    every `job_interval_seconds` whichever jobs nobody runs."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.node = new_node_id()
        self.interval = services.settings.job_interval_seconds
        self.batch_size = services.settings.job_batch_size
        self.slots = asyncio.Semaphore(CONCURRENT_JOBS)
        self.running: dict[int, asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()
        self.loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval:
            self.loop = asyncio.create_task(self._look_forever(), name="bulk-jobs")

    def submit(self, job_id: int) -> None:
        """Run the job on this node as soon as a slot is free (another node may take it first:
        the lease decides, and this node then leaves it)."""
        if self.stopping.is_set() or job_id in self.running:
            return
        task = asyncio.create_task(self._run(job_id), name=f"bulk-job-{job_id}")
        self.running[job_id] = task
        task.add_done_callback(lambda _t: self.running.pop(job_id, None))

    async def stop(self) -> None:
        """Let every running job finish its batch, hand it back (pending), then stop."""
        self.stopping.set()
        tasks = [t for t in (self.loop, *self.running.values()) if t is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:  # a batch that would not end: its lease runs out, another resumes
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def look(self) -> list[int]:
        """Submit every job nobody runs; their ids."""
        async with self.services.engine.connect() as conn:
            ids = await resumable_jobs(conn, repo.utcnow())
        for job_id in ids:
            self.submit(job_id)
        return ids

    async def _look_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.look()
            except Exception:  # the database is away: look again next round
                log.exception("looking for bulk jobs to resume failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.interval)

    async def _run(self, job_id: int) -> None:
        async with self.slots:
            if self.stopping.is_set():
                return
            try:
                await self._run_now(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk job %s stopped on this node", job_id)

    async def _run_now(self, job_id: int) -> None:
        services = self.services
        async with services.engine.connect() as conn:
            job = await get_job(conn, job_id)
        if job is None or job.status in (JobStatus.DONE, JobStatus.FAILED):
            return
        # Selected customers are skipped by what Redis says (rule 5): it must know them all.
        await services.selections.ensure_ready(job.data_owner_id)
        publisher = ProgressPublisher(services, job, self.stopping)
        try:
            await bulk.run_bulk_job(
                services.engine,
                job_id,
                selections=services.selections.store,
                node=self.node,
                on_progress=publisher,
                batch_size=self.batch_size,
            )
        except JobBusy:
            return  # another node runs it (or took it over)
        except _Stopping:
            await release_lease(services.engine, job_id, self.node, repo.utcnow())
        except DomainError as error:
            # run_job marked the job failed and the publisher sent bulk.finished.
            log.info("bulk job %s failed: %s", job_id, error.message)
