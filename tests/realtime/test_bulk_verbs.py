"""Bulk work over the wire (rules 19-22): jobs started from a supervisor's connection run on a
node in the background, their progress reaches supervisors on any node, their report stays
with the job; rights follow the assignment's grants (rule 3)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hub_kit import SECRET, WAIT, Client, Node, connect
from owners import forget_owner, new_owner_id
from shop_kit import FLOW, SETUP, ok, refused
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import bulk
from domain.db import repositories as repo
from domain.model import CrmKind, FieldType, InfoField, Role, User
from realtime.tokens import issue_token

JOB_WAIT = 30.0
"""Bound on a job's whole run (a resumed one waits for its lease and a node's next look)."""


@dataclass
class World:
    owner: int
    assignment_id: int
    other_assignment_id: int
    segments: dict[str, int]
    agent: User
    supervisor: User
    stranger: User
    """A supervisor of the same data owner without a grant on the assignment."""
    admin: User
    customer_ids: list[int]

    def token(self, user: User) -> str:
        return issue_token(SECRET, user.id, 3600).token


async def make_world(engine: AsyncEngine, customers: int) -> World:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bulk-{tag}", id=new_owner_id())
        fields = (
            InfoField("municipality", "Municipality", FieldType.TEXT),
            InfoField("score", "Score", FieldType.NUMBER),
        )
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C, fields)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "Calls", FLOW, SETUP, ["North", "South"]
        )
        other = await repo.create_assignment(conn, owner.id, crm.id, "Winback", FLOW, SETUP)

        async def user(name: str, role: Role, *granted: int) -> User:
            made = await repo.create_user(
                conn, owner.id, f"{name}-{tag}", name, role, "", password_hash="x"
            )
            for assignment_id in granted:
                await repo.grant(conn, made.id, assignment_id)
            return made

        agent = await user("Agent", Role.AGENT, assignment.id)
        supervisor = await user("Sara Supervisor", Role.SUPERVISOR, assignment.id, other.id)
        stranger = await user("Stig Stranger", Role.SUPERVISOR, other.id)
        admin = await user("Adam Admin", Role.ADMIN)
        segments = {s.name: s.id for s in assignment.segments}
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"b{i:03d}",
                    "name": f"Customer {i}",
                    "phones": [f"+4791000{i:03d}"],
                    "info": {"municipality": "Bergen" if i % 2 else "Oslo"},
                    "assignment_id": assignment.id,
                    "segment_id": segments["North" if i % 2 else "South"],
                }
                for i in range(customers)
            ],
        )
        ids = []
        for i in range(customers):
            found = await repo.get_customer_by_external_id(conn, owner.id, crm.id, f"b{i:03d}")
            assert found is not None
            ids.append(found.id)
    return World(
        owner.id, assignment.id, other.id, segments, agent, supervisor, stranger, admin, ids
    )


@pytest.fixture
async def new_world(
    engine: AsyncEngine, redis_url: str
) -> AsyncIterator[Callable[..., Awaitable[World]]]:
    owners: list[int] = []

    async def make(customers: int = 6) -> World:
        world = await make_world(engine, customers)
        owners.append(world.owner)
        return world

    yield make
    for owner in owners:
        await forget_owner(redis_url, owner)


async def post_file(url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.post(url, **options)


def of(world: World, **conditions: Any) -> dict[str, Any]:
    return {"assignment_id": str(world.assignment_id), **conditions}


async def statuses(client: Client, world: World, assignment_id: int | None = None) -> dict:
    filter_ = {"assignment_id": str(assignment_id or world.assignment_id)}
    seen = ok(await client.request("bulk.preview", filter=filter_))
    return {s["key"]: s["count"] for s in seen["statuses"]}


async def test_rule_19_a_mass_outcome_started_on_one_node_reports_to_a_supervisor_on_another(
    nodes: tuple[Node, Node], new_world: Any
) -> None:
    world = await new_world(customers=6)
    agent = await connect(nodes[0].ws, world.token(world.agent))
    starter = await connect(nodes[0].ws, world.token(world.admin))
    watcher = await connect(nodes[1].ws, world.token(world.supervisor))
    try:
        held = world.customer_ids[0]
        ok(await agent.request("customer.select", customer_id=str(held)))
        assert ok(await watcher.request("bulk.jobs", assignment_id=str(world.assignment_id))) == {
            "jobs": []
        }
        available = of(world, statuses=["available"])
        seen = ok(await starter.request("bulk.preview", filter=available))
        assert (seen["matched"], seen["selected"]) == (6, 1)
        assert {o["id"] for o in seen["outcomes"]} == {"interested", "sale", "not_interested"}

        started = ok(
            await starter.request(
                "bulk.outcome", filter=available, outcome_id="sale", details={"amount": 12}
            )
        )
        job_id = started["job"]["job_id"]
        assert started["job"]["expected"] == 6 and started["job"]["kind"] == "outcome"

        progress = await watcher.event("bulk.progress", within=JOB_WAIT, job_id=job_id)
        assert progress["data"]["assignment_id"] == str(world.assignment_id)
        finished = await watcher.event("bulk.finished", within=JOB_WAIT, job_id=job_id)
        report = finished["data"]["report"]
        assert finished["data"]["status"] == "done" and finished["data"]["percent"] == 100
        assert (report["matched"], report["changed"]) == (6, 5)
        assert report["skipped"] == {"selected": 1}  # rule 19: skipped and counted
        assert report["summary"] == "5 of 6 changed; 1 selected"

        # The report stays with the job, for whoever opens the page later.
        again = ok(await watcher.request("bulk.job", job_id=job_id))["job"]
        assert again["report"] == report and again["status"] == "done"
        assert again["created_by"]["name"] == "Adam Admin"
        listed = ok(await watcher.request("bulk.jobs", assignment_id=str(world.assignment_id)))
        assert [j["job_id"] for j in listed["jobs"]] == [job_id]
        assert await statuses(watcher, world) == {"available": 1, "sale": 5}
    finally:
        for client in (agent, starter, watcher):
            await client.close()


async def test_rule_20_a_bulk_move_to_a_segment_and_to_another_assignment(
    nodes: tuple[Node, Node], new_world: Any
) -> None:
    world = await new_world(customers=4)
    supervisor = await connect(nodes[1].ws, world.token(world.supervisor))
    try:
        ok(await supervisor.request("bulk.jobs", assignment_id=str(world.assignment_id)))
        north = of(world, segment_ids=[str(world.segments["North"])])
        job = ok(
            await supervisor.request(
                "bulk.move", filter=north, to_segment_id=str(world.segments["South"])
            )
        )["job"]
        done = await supervisor.event("bulk.finished", within=JOB_WAIT, job_id=job["job_id"])
        assert done["data"]["report"]["summary"] == "2 of 2 moved"

        options = ok(
            await supervisor.request("bulk.options", assignment_id=str(world.assignment_id))
        )
        assert options["move_targets"] == [
            {"id": str(world.other_assignment_id), "name": "Winback"}
        ]
        assert [f["key"] for f in options["info_fields"]] == ["municipality", "score"]
        bergen = of(world, info=[{"field": "municipality", "op": "eq", "value": "Bergen"}])
        job = ok(
            await supervisor.request(
                "bulk.move", filter=bergen, to_assignment_id=str(world.other_assignment_id)
            )
        )["job"]
        done = await supervisor.event("bulk.finished", within=JOB_WAIT, job_id=job["job_id"])
        assert done["data"]["report"]["changed"] == 2
        assert await statuses(supervisor, world, world.other_assignment_id) == {"available": 2}
        assert await statuses(supervisor, world) == {"available": 2}
    finally:
        await supervisor.close()


async def test_bad_input_is_invalid_and_nothing_is_applied(
    nodes: tuple[Node, Node], new_world: Any
) -> None:
    world, theirs = await new_world(customers=3), await new_world(customers=1)
    supervisor = await connect(nodes[0].ws, world.token(world.supervisor))
    try:
        before = await statuses(supervisor, world)
        bad = [
            ("bulk.preview", {"filter": of(world, statuses=["nope"])}, "invalid"),
            ("bulk.preview", {"filter": of(world, colour="red")}, "invalid"),
            ("bulk.preview", {"filter": of(world, attempts={"min": 3, "max": 1})}, "invalid"),
            (
                "bulk.preview",
                {"filter": of(world, info=[{"field": "municipality", "op": "range", "min": 1}])},
                "invalid",
            ),
            ("bulk.outcome", {"filter": of(world), "outcome_id": "sale"}, "invalid"),
            (
                "bulk.outcome",
                {"filter": of(world), "outcome_id": "sale", "details": {"amount": "lots"}},
                "invalid",
            ),
            (
                "bulk.outcome",
                {"filter": of(world), "outcome_id": "call_team"},
                "invalid_transition",
            ),
            ("bulk.outcome", {"filter": of(world)}, "invalid"),
            ("bulk.move", {"filter": of(world)}, "invalid"),
            (
                "bulk.move",
                {
                    "filter": of(world),
                    "to_segment_id": str(world.segments["North"]),
                    "to_assignment_id": str(world.other_assignment_id),
                },
                "invalid",
            ),
            ("bulk.move", {"filter": of(world), "to_segment_id": "12x"}, "invalid"),
            (
                "bulk.move",
                {"filter": of(world), "to_assignment_id": str(theirs.assignment_id)},
                "not_found",
            ),
        ]
        for verb, fields, code in bad:
            refused(await supervisor.request(verb, **fields), code)
        listed = ok(await supervisor.request("bulk.jobs", assignment_id=str(world.assignment_id)))
        assert listed["jobs"] == []
        assert await statuses(supervisor, world) == before
    finally:
        await supervisor.close()


async def test_rule_3_bulk_work_follows_the_assignments_grants(
    nodes: tuple[Node, Node], new_world: Any
) -> None:
    world = await new_world(customers=2)
    supervisor = await connect(nodes[0].ws, world.token(world.supervisor))
    stranger = await connect(nodes[1].ws, world.token(world.stranger))
    agent = await connect(nodes[1].ws, world.token(world.agent))
    try:
        job = ok(
            await supervisor.request("bulk.outcome", filter=of(world), outcome_id="not_interested")
        )["job"]
        await supervisor.event("bulk.finished", within=JOB_WAIT, job_id=job["job_id"])
        assignment = str(world.assignment_id)
        for verb, fields in (
            ("bulk.options", {"assignment_id": assignment}),
            ("bulk.preview", {"filter": of(world)}),
            ("bulk.outcome", {"filter": of(world), "outcome_id": "sale"}),
            ("bulk.jobs", {"assignment_id": assignment}),
            ("bulk.job", {"job_id": job["job_id"]}),
        ):
            refused(await stranger.request(verb, **fields), "not_found")
            refused(await agent.request(verb, **fields), "forbidden")
        # The stranger follows bulk work of its own assignment and hears nothing of this one.
        ok(await stranger.request("bulk.jobs", assignment_id=str(world.other_assignment_id)))
        second = ok(
            await supervisor.request(
                "bulk.move", filter=of(world), to_segment_id=str(world.segments["North"])
            )
        )["job"]
        await supervisor.event("bulk.finished", within=JOB_WAIT, job_id=second["job_id"])
        ok(await stranger.request("ping"))
        assert not [e for e in stranger.events if e["event"].startswith("bulk.")]
        refused(
            await supervisor.request(
                "bulk.import", assignment_id=assignment, upload_id="x", mapping={"a": "b", "c": "d"}
            ),
            "forbidden",
        )
        upload = await post_file(
            f"{nodes[0].http}/api/bulk/uploads",
            params={"name": "cards.csv"},
            content=b"id;score\nb000;1\n",
            headers={"Authorization": f"Bearer {world.token(world.supervisor)}"},
        )
        assert upload.status_code == 403 and upload.json()["error"]["code"] == "forbidden"
    finally:
        for client in (supervisor, stranger, agent):
            await client.close()


async def test_rule_22_an_import_reports_per_row_from_any_node(
    nodes: tuple[Node, Node], new_world: Any
) -> None:
    world = await new_world(customers=3)
    admin = await connect(nodes[1].ws, world.token(world.admin))
    agent = await connect(nodes[0].ws, world.token(world.agent))
    try:
        ok(await agent.request("customer.select", customer_id=str(world.customer_ids[2])))
        csv = "Kundeid;Score;Kommune\nb000;7;Tromsø\nb001;x;\nzzz;3;\nb002;5;\n"
        auth = {"Authorization": f"Bearer {world.token(world.admin)}"}
        upload = await post_file(
            f"{nodes[0].http}/api/bulk/uploads",
            params={"name": "cards.csv"},
            content=csv.encode(),
            headers=auth,
        )
        assert upload.status_code == 200, upload.text
        file = upload.json()
        assert file["headers"] == ["Kundeid", "Score", "Kommune"] and file["rows"] == 4
        assert file["sample"][0] == ["b000", "7", "Tromsø"]
        assignment = str(world.assignment_id)
        refused(
            await admin.request(
                "bulk.import",
                assignment_id=assignment,
                upload_id=file["upload_id"],
                mapping={"Kundeid": "external_id", "Score": "shoe_size"},
            ),
            "invalid",
        )
        job = ok(
            await admin.request(
                "bulk.import",
                assignment_id=assignment,
                upload_id=file["upload_id"],
                mapping={"Kundeid": "external_id", "Score": "score", "Kommune": "municipality"},
            )
        )["job"]
        done = await admin.event("bulk.finished", within=JOB_WAIT, job_id=job["job_id"])
        report = done["data"]["report"]
        assert (report["matched"], report["changed"]) == (4, 1)
        assert report["skipped"] == {"invalid": 1, "not_found": 1, "selected": 1}
        rows = ok(await admin.request("bulk.job", job_id=job["job_id"]))
        assert rows["rows_total"] == 4
        results = [(r["external_id"], r["result"], r["assignment"]) for r in rows["rows"]]
        assert results == [
            ("b000", "updated", "Calls"),
            ("b001", "invalid", "Calls"),
            ("zzz", "not_found", None),
            ("b002", "selected", "Calls"),
        ]
        listed = ok(await admin.request("bulk.jobs", assignment_id=assignment))["jobs"]
        assert [j["job_id"] for j in listed] == [job["job_id"]] and listed[0]["file"] == "cards.csv"
        # The upload is used up.
        refused(
            await admin.request(
                "bulk.import",
                assignment_id=assignment,
                upload_id=file["upload_id"],
                mapping={"Kundeid": "external_id", "Score": "score"},
            ),
            "not_found",
        )
    finally:
        await admin.close()
        await agent.close()


class NodeDied(Exception):
    """The node running the job stopped right after a batch: its lease is left to run out."""


async def test_a_job_whose_node_died_is_resumed_by_a_node_and_reported(
    nodes: tuple[Node, Node], new_world: Any, engine: AsyncEngine
) -> None:
    world = await new_world(customers=5)
    watcher = await connect(nodes[1].ws, world.token(world.supervisor))
    try:
        ok(await watcher.request("bulk.jobs", assignment_id=str(world.assignment_id)))
        async with engine.begin() as conn:
            job = await bulk.create_mass_outcome_job(
                conn, world.supervisor, of(world), "not_interested", {}, repo.utcnow()
            )

        def die_after_first_batch(progress: Any) -> None:
            if progress.processed >= 2:
                raise NodeDied

        with pytest.raises(NodeDied):
            await bulk.run_bulk_job(
                engine,
                job.id,
                selections=None,
                node="doomed-node",
                on_progress=die_after_first_batch,
                batch_size=2,
                lease=timedelta(seconds=1),
            )
        finished = await watcher.event("bulk.finished", within=JOB_WAIT, job_id=str(job.id))
        report = finished["data"]["report"]
        assert (report["matched"], report["changed"]) == (5, 5)  # none twice, none forgotten
        assert await statuses(watcher, world) == {"not_interested": 5}
    finally:
        await watcher.close()
