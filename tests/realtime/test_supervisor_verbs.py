"""Supervisor rights over the wire (rules 3, 7): the release audit, and every verb of the
protocol asked by a user without the right to it."""

from __future__ import annotations

from typing import Any

from hub_kit import Node, connect
from shop_kit import ok, refused, start

import realtime.verbs  # noqa: F401  (registers every verb, as the app does)
from realtime.protocol import REGISTRY


async def test_rule_07_the_release_audit_names_whose_selection_and_who_released_it(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=3)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    supervisor = await connect(nodes[1].ws, shop.token(shop.supervisor))
    try:
        released = []
        for _ in range(3):
            screen = await start(agent, shop)
            released.append(screen["customer"]["id"])
            ok(await supervisor.request("selection.release", customer_id=screen["customer"]["id"]))
            await agent.event("selection.revoked", customer_id=screen["customer"]["id"])
        page = ok(
            await supervisor.request(
                "selection.audit", assignment_id=str(shop.assignment_id), limit=2
            )
        )
        assert [r["customer_id"] for r in page["releases"]] == released[::-1][:2]
        first = page["releases"][0]
        assert first["holder_name"] == "Agent 0" and first["released_by_name"] == "Sara Supervisor"
        assert first["by_someone_else"] is True and first["at"]
        rest = ok(
            await supervisor.request(
                "selection.audit", assignment_id=str(shop.assignment_id), before=page["cursor"]
            )
        )
        assert [r["customer_id"] for r in rest["releases"]] == [released[0]]
        assert rest["cursor"] is None
        refused(
            await agent.request("selection.audit", assignment_id=str(shop.assignment_id)),
            "forbidden",
        )
    finally:
        await agent.close()
        await supervisor.close()


def frames(customer: str, assignment: str) -> dict[str, dict[str, Any]]:
    """A well-formed request of every verb, aimed at the given (someone else's) ids."""
    return {
        "ping": {},
        "resume": {},
        "presence.set": {"state": "paused"},
        "presence.watch": {},
        "selection.release": {"customer_id": customer},
        "work.stop": {},
        "selected.watch": {"assignment_id": assignment},
        "selection.audit": {"assignment_id": assignment},
        "work.start": {"assignment_id": assignment},
        "customer.select": {"customer_id": customer},
        "customer.attempt": {"customer_id": customer, "selection_token": "1", "kind": "no_answer"},
        "customer.save": {"customer_id": customer, "selection_token": "1", "outcome_id": "sale"},
        "customer.edit": {"customer_id": customer, "selection_token": "1", "info": {}},
        "customer.get": {"customer_id": customer},
        "my_work.get": {},
        "work.resume": {},
        "bulk.options": {"assignment_id": assignment},
        "bulk.preview": {"filter": {"assignment_id": assignment}},
        "bulk.outcome": {"filter": {"assignment_id": assignment}, "outcome_id": "sale"},
        "bulk.move": {"filter": {"assignment_id": assignment}, "to_segment_id": "1"},
        "bulk.import": {
            "assignment_id": assignment,
            "upload_id": "x",
            "mapping": {"id": "external_id", "a": "b"},
        },
        "bulk.jobs": {"assignment_id": assignment},
        "bulk.job": {"job_id": "1"},
        "call.dial": {"customer_id": customer, "selection_token": "1"},
        "call.hang_up": {},
        "call.state": {},
    }


BULK = ("bulk.options", "bulk.preview", "bulk.outcome", "bulk.move", "bulk.import")
BULK += ("bulk.jobs", "bulk.job")

# What a user without rights gets: agents are refused supervisor verbs outright; ids of
# another data owner are unknown (rule 3); writes without the live selection are refused.
AGENT = {
    "presence.watch": "forbidden",
    "selected.watch": "forbidden",
    "selection.audit": "forbidden",
    "selection.release": "not_found",
    "work.start": "not_found",
    "customer.select": "not_found",
    "customer.get": "not_found",
    "customer.attempt": "selection_lost",
    "customer.save": "selection_lost",
    "customer.edit": "selection_lost",
    "call.dial": "selection_lost",
    **{verb: "forbidden" for verb in BULK},
}
SUPERVISOR = {
    "selected.watch": "not_found",
    "selection.audit": "not_found",
    "selection.release": "not_found",
    "work.start": "not_found",
    "customer.select": "not_found",
    "customer.get": "not_found",
    "customer.attempt": "selection_lost",
    "customer.save": "selection_lost",
    "customer.edit": "selection_lost",
    "call.dial": "selection_lost",
    **{verb: "not_found" for verb in BULK},
    "bulk.import": "forbidden",  # imports are for administrators
}


async def test_every_verb_refuses_a_user_without_the_right(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    mine, theirs = await new_shop(customers=1), await new_shop(customers=1)
    requests = frames(str(theirs.customer_ids[0]), str(theirs.assignment_id))
    assert set(requests) == set(REGISTRY.verbs), "a verb without a rights test"
    for user, expected in ((mine.agents[0], AGENT), (mine.supervisor, SUPERVISOR)):
        client = await connect(nodes[0].ws, mine.token(user))
        try:
            for verb, fields in requests.items():
                reply = await client.request(verb, **fields)
                if verb in expected:
                    refused(reply, expected[verb])
                else:
                    assert reply["ok"], (user.role, verb, reply)  # harmless to anyone
        finally:
            await client.close()
    # Nothing of the other data owner was touched.
    other = await connect(nodes[1].ws, theirs.token(theirs.agents[0]))
    try:
        screen = await start(other, theirs)
        assert screen is not None and screen["customer"]["id"] == str(theirs.customer_ids[0])
        assert screen["customer"]["attempts"] == 0
    finally:
        await other.close()
