"""Bulk work from the supervisor's page (rules 19-22): preview a customer filter, start a mass
outcome, a move or an import as a job, follow it and read its report.

Starting checks everything a user can get wrong before the job exists (domain.db.bulk), so a
refusal leaves nothing; the job then runs on a node in the background (realtime.bulk_jobs) and
its progress comes as `bulk.progress` / `bulk.finished` events. Supervisors and administrators
only, on the assignments they may see (rule 3); imports are for administrators.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from domain.bulk import JobKind
from domain.db import bulk, imports, screens
from domain.db import repositories as repo
from domain.db.jobs import Job, assignment_of, get_job, list_jobs
from domain.errors import NotFound
from domain.filters import CustomerFilter
from domain.model import Assignment, Role, User
from presence.agents import epoch_ms
from realtime.bulk_jobs import JobRunner, job_row
from realtime.connection import Context
from realtime.protocol import Request, WireId, verb
from realtime.uploads import forget_upload, take_upload

SUPERVISORS = (Role.SUPERVISOR, Role.ADMIN)
ADMINS = (Role.ADMIN,)
JOBS_PAGE = 20
ROWS_PAGE = 100

FILTER_DOC = (
    "a customer filter: assignment_id and any of segment_ids, statuses, attempts "
    '{"min", "max"}, has_email, has_phone, info [{"field", "op": "eq"|"range"|"date_range"'
    '|"empty", ...}]; every condition given must hold'
)


def runner(ctx: Context) -> JobRunner:
    return ctx.connection.websocket.app.state.job_runner


async def visible(ctx: Context, assignment_id: int) -> Assignment:
    """The assignment if the user may see it; NotFound as for one that does not exist."""
    async with ctx.services.engine.connect() as conn:
        if assignment_id not in await repo.visible_assignment_ids(conn, ctx.user):
            raise NotFound("no such assignment")
        assignment = await repo.get_assignment(
            conn, assignment_id, data_owner_id=ctx.user.data_owner_id
        )
    if assignment is None:
        raise NotFound("no such assignment")
    return assignment


async def may_see_job(ctx: Context, job: Job) -> bool:
    """A job on an assignment: whoever may see the assignment; an import: administrators."""
    assignment_id = assignment_of(job)
    if assignment_id is None:
        return ctx.user.role is Role.ADMIN
    async with ctx.services.engine.connect() as conn:
        return assignment_id in await repo.visible_assignment_ids(conn, ctx.user)


async def follow_jobs(ctx: Context) -> None:
    """From now on this connection gets the bulk events of the jobs the user may see."""
    ctx.connection.watching.setdefault("jobs", None)
    timeout_ms = int(ctx.services.settings.presence_timeout_seconds * 1000)
    await ctx.services.events.watch(ctx.owner, ctx.user.id, epoch_ms() + timeout_ms)


async def started(ctx: Context, job: Job) -> dict[str, Any]:
    await follow_jobs(ctx)
    runner(ctx).submit(job.id)
    async with ctx.services.engine.connect() as conn:
        names = await screens.user_names(conn, [job.created_by])
    return {"job": job_row(job, names)}


# What the filter form offers ----------------------------------------------------------------------


class BulkOptions(Request):
    type: Literal["bulk.options"]
    assignment_id: WireId


@verb(BulkOptions, roles=SUPERVISORS)
async def bulk_options(ctx: Context, request: BulkOptions) -> dict[str, Any]:
    """What a filter and a bulk action can name on this assignment: its segments, the flow's
    statuses, the CRM's info fields, the assignments a move may go to (same CRM, visible),
    and whether this user may import."""
    assignment = await visible(ctx, int(request.assignment_id))
    async with ctx.services.engine.connect() as conn:
        crm = await repo.get_crm(conn, assignment.crm_id, data_owner_id=ctx.user.data_owner_id)
        ids = await repo.visible_assignment_ids(conn, ctx.user)
        targets = [
            a
            for a in await repo.list_assignments(conn, ctx.user.data_owner_id)
            if a.id in ids and a.id != assignment.id and a.crm_id == assignment.crm_id
        ]
    if crm is None:
        raise NotFound("no such assignment")
    return {
        "assignment_id": str(assignment.id),
        "segments": [{"id": str(s.id), "name": s.name} for s in assignment.segments],
        "statuses": [{"key": s.key, "name": s.name} for s in assignment.flow.statuses],
        "info_fields": [
            {"key": f.key, "label": f.label, "type": f.type.value} for f in crm.info_fields
        ],
        "move_targets": [{"id": str(a.id), "name": a.name} for a in targets],
        "can_import": ctx.user.role is Role.ADMIN,
    }


# Preview ------------------------------------------------------------------------------------------


class BulkPreview(Request):
    type: Literal["bulk.preview"]
    filter: CustomerFilter = Field(description=FILTER_DOC)


@verb(BulkPreview, roles=SUPERVISORS)
async def bulk_preview(ctx: Context, request: BulkPreview) -> dict[str, Any]:
    """How many customers the filter matches now, how many of them are selected (they will be
    skipped, rule 19), per status, and the outcomes valid from every status present."""
    services = ctx.services
    await services.selections.ensure_ready(ctx.owner)
    async with services.engine.connect() as conn:
        seen = await bulk.preview(conn, ctx.user, request.filter, services.selections.store)
        assignment = await repo.get_assignment(
            conn, request.filter.assignment_id, data_owner_id=ctx.owner
        )
    assert assignment is not None  # preview checked it
    flow = assignment.flow
    return {
        "matched": seen.matched,
        "selected": seen.selected,
        "statuses": [
            {"key": key, "name": _status_name(assignment, key), "count": n}
            for key, n in seen.statuses.items()
        ],
        "outcomes": [
            screens.outcome_row(outcome)
            for key in seen.outcome_options
            if (outcome := flow.outcome(key)) is not None
        ],
    }


def _status_name(assignment: Assignment, key: str | None) -> str:
    status = assignment.flow.status(key) if key else None
    return status.name if status else (key or "")


# Starting jobs ------------------------------------------------------------------------------------


class BulkOutcome(Request):
    type: Literal["bulk.outcome"]
    filter: CustomerFilter = Field(description=FILTER_DOC)
    outcome_id: str = Field(min_length=1, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, description="apply to every customer")
    follow_up_at: AwareDatetime | None = Field(
        default=None, description="when the outcome makes a follow-up"
    )


@verb(BulkOutcome, roles=SUPERVISORS)
async def bulk_outcome(ctx: Context, request: BulkOutcome) -> dict[str, Any]:
    """Rule 19: start a mass outcome. Only an outcome valid from every status in the filter
    (`invalid_transition` with `allowed` otherwise); details checked as on one customer.
    Answers `{"job": <job>}`; the job runs in the background."""
    async with ctx.services.engine.begin() as conn:
        job = await bulk.create_mass_outcome_job(
            conn,
            ctx.user,
            request.filter,
            request.outcome_id,
            request.details,
            repo.utcnow(),
            follow_up_at=request.follow_up_at,
        )
    return await started(ctx, job)


class BulkMove(Request):
    type: Literal["bulk.move"]
    filter: CustomerFilter = Field(description=FILTER_DOC)
    to_segment_id: WireId | None = Field(default=None, description="a segment of the same list")
    to_assignment_id: WireId | None = Field(
        default=None, description="another assignment of the same CRM the user may see"
    )


@verb(BulkMove, roles=SUPERVISORS)
async def bulk_move(ctx: Context, request: BulkMove) -> dict[str, Any]:
    """Rule 20: start a bulk move, to a segment (status and follow-ups kept) or to another
    assignment of the same CRM (available and unsegmented there). Give exactly one target."""
    async with ctx.services.engine.begin() as conn:
        job = await bulk.create_move_job(
            conn,
            ctx.user,
            request.filter,
            repo.utcnow(),
            to_segment_id=_int(request.to_segment_id),
            to_assignment_id=_int(request.to_assignment_id),
        )
    return await started(ctx, job)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


class BulkImport(Request):
    type: Literal["bulk.import"]
    assignment_id: WireId = Field(description="its CRM is the one the file updates")
    upload_id: str = Field(min_length=1, max_length=64, description="from POST /api/bulk/uploads")
    mapping: dict[str, str] = Field(
        min_length=2,
        max_length=200,
        description='file column -> "external_id" or an info field\'s key',
    )


@verb(BulkImport, roles=ADMINS)
async def bulk_import(ctx: Context, request: BulkImport) -> dict[str, Any]:
    """Rule 22: start an import of an uploaded file into the CRM of the assignment, columns
    mapped onto external_id and info fields. Rows with bad values are reported, not refused;
    a bad mapping is `invalid` and nothing is staged."""
    assignment = await visible(ctx, int(request.assignment_id))
    upload, table = await take_upload(ctx.services, ctx.user, request.upload_id)
    async with ctx.services.engine.begin() as conn:
        job = await imports.create_import_job(
            conn,
            ctx.user,
            assignment.crm_id,
            table,
            request.mapping,
            repo.utcnow(),
            file_name=upload.name,
        )
    await forget_upload(ctx.services, ctx.user, request.upload_id)
    return await started(ctx, job)


# Following jobs -----------------------------------------------------------------------------------


class BulkJobs(Request):
    type: Literal["bulk.jobs"]
    assignment_id: WireId
    limit: int = Field(default=JOBS_PAGE, ge=1, le=100)


@verb(BulkJobs, roles=SUPERVISORS)
async def bulk_jobs(ctx: Context, request: BulkJobs) -> dict[str, Any]:
    """The assignment's jobs, newest first (an administrator also sees the imports into its
    CRM); then `bulk.progress` and `bulk.finished` events follow on this connection."""
    assignment = await visible(ctx, int(request.assignment_id))
    await follow_jobs(ctx)
    async with ctx.services.engine.connect() as conn:
        jobs = [job for job in await list_jobs(conn, ctx.owner) if _on(job, assignment, ctx.user)][
            : request.limit
        ]
        names = await screens.user_names(conn, [job.created_by for job in jobs])
    return {"jobs": [job_row(job, names) for job in jobs]}


def _on(job: Job, assignment: Assignment, user: User) -> bool:
    if job.kind is JobKind.IMPORT:
        return user.role is Role.ADMIN and int(job.params.get("crm_id", 0)) == assignment.crm_id
    return assignment_of(job) == assignment.id


class BulkJob(Request):
    type: Literal["bulk.job"]
    job_id: WireId
    rows_offset: int = Field(default=0, ge=0, description="an import's report rows from here")
    rows_limit: int = Field(default=ROWS_PAGE, ge=0, le=1000)


@verb(BulkJob, roles=SUPERVISORS)
async def bulk_job(ctx: Context, request: BulkJob) -> dict[str, Any]:
    """One job with its final report (rule 21); an import also its report per row (rule 22):
    `rows` [{"row_no", "external_id", "result", "detail", "customer_id", "assignment_id",
    "assignment"}] from `rows_offset`, and `rows_total`."""
    async with ctx.services.engine.connect() as conn:
        job = await get_job(conn, int(request.job_id), data_owner_id=ctx.owner)
    if job is None or not await may_see_job(ctx, job):
        raise NotFound("no such job")  # also another data owner's (rule 3)
    await follow_jobs(ctx)
    async with ctx.services.engine.connect() as conn:
        names = await screens.user_names(conn, [job.created_by])
        answer: dict[str, Any] = {"job": job_row(job, names), "rows": None, "rows_total": None}
        if job.kind is JobKind.IMPORT:
            rows = await imports.import_rows(
                conn, job.id, offset=request.rows_offset, limit=request.rows_limit
            )
            answer["rows"] = [
                {
                    **row,
                    "customer_id": screens.sid(row["customer_id"]),
                    "assignment_id": screens.sid(row["assignment_id"]),
                }
                for row in rows
            ]
            answer["rows_total"] = job.expected
    return answer
