"""The agent's work loop over real WebSocket connections to two running nodes (rules 3-18, 24).

Each test makes a tenant of its own (shop_kit) with a flow that has personal and shared
follow-ups, grants its agents the assignment, and talks to the nodes exactly as a browser does.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub_kit import Node, connect
from shop_kit import (
    AVAILABLE,
    CustomerFlow,
    Outcome,
    Status,
    holding,
    later,
    ok,
    refused,
    start,
)
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import tables as t
from domain.model import AssignmentSetup


async def test_rule_10_two_agents_on_two_nodes_get_different_customers_in_order(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=6)
    a = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    b = await connect(nodes[1].ws, shop.token(shop.agents[1]))
    try:
        first = await start(a, shop)
        second = await start(b, shop)
        assert first["customer"]["id"] != second["customer"]["id"]
        assert {first["customer"]["id"], second["customer"]["id"]} == {
            str(shop.customer_ids[0]),
            str(shop.customer_ids[1]),
        }  # the default order: oldest first, then id
        assert first["mode"] == "list" and first["next_options"][0] == "next_from_list"
        assert first["customer"]["phones"] == ["+4790000000"] or first["customer"]["phones"]
        # One segment: only its customers.
        await a.request("work.stop")
        north = await start(a, shop, segment_ids=[str(shop.segments["North"])])
        assert int(north["customer"]["id"]) in shop.customer_ids[1::2]
        assert north["segment_id"] == str(shop.segments["North"])
    finally:
        await a.close()
        await b.close()


async def test_rule_11_a_due_shared_follow_up_comes_first(
    nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=4)
    due, held_back = shop.customer_ids[3], shop.customer_ids[0]
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        c = t.customers.c
        await conn.execute(
            update(t.customers)
            .where(c.id == due)
            .values(shared_follow_up_at=now - timedelta(minutes=1))
        )
        await conn.execute(
            update(t.customers)
            .where(c.id == held_back)
            .values(shared_follow_up_at=now + timedelta(days=1))
        )
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        assert screen["customer"]["id"] == str(due)
        seen = [screen["customer"]["id"]]
        for _ in range(5):
            reply = ok(
                await agent.request(
                    "customer.save", customer_id=screen["customer"]["id"],
                    selection_token=screen["selection_token"], outcome_id="not_interested",
                )
            )  # fmt: skip
            screen = reply["screen"]
            if screen is None:
                break
            seen.append(screen["customer"]["id"])
        assert str(held_back) not in seen and len(seen) == 3
    finally:
        await agent.close()


async def test_rule_12_work_stop_puts_the_customer_back_into_play(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    a = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    b = await connect(nodes[1].ws, shop.token(shop.agents[1]))
    try:
        screen = await start(a, shop)
        assert await start(b, shop) is None  # the only customer is held
        assert ok(await a.request("work.stop"))["released"] is True
        again = await start(b, shop)
        assert again is not None and again["customer"]["id"] == screen["customer"]["id"]
    finally:
        await a.close()
        await b.close()


async def test_rule_13_no_answer_counts_an_attempt_and_refuses_a_time(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        fields = holding(screen)
        refused(
            await agent.request("customer.attempt", kind="no_answer", at=later(1), **fields),
            "invalid",
        )
        reply = ok(
            await agent.request("customer.attempt", kind="no_answer", next="continue", **fields)
        )
        assert reply["screen"]["customer"]["attempts"] == 1
        assert reply["screen"]["status"] == AVAILABLE
    finally:
        await agent.close()


async def test_rule_13_no_answer_keeps_a_personal_follow_up_in_my_work(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        customer = screen["customer"]["id"]
        screen = ok(
            await agent.request(
                "customer.save", customer_id=customer, selection_token=screen["selection_token"],
                outcome_id="interested", follow_up_at=later(0.6), next="continue",
            )
        )["screen"]  # fmt: skip
        reply = ok(
            await agent.request(
                "customer.attempt", customer_id=customer, selection_token=screen["selection_token"],
                kind="no_answer", next="continue",
            )
        )  # fmt: skip
        assert reply["screen"]["customer"]["attempts"] == 1
        # Not available, so in no list: the personal follow-up is how the agent gets back to it.
        panel = reply["screen"]["side_panel"]
        assert [f["customer_id"] for f in panel["upcoming_mine"]] == [customer]
        details = ok(await agent.request("customer.get", customer_id=customer))
        kinds = [h["kind"] for h in details["history"]]
        assert "follow_up_created" in kinds and "follow_up_ended" not in kinds
    finally:
        await agent.close()


async def test_rule_14_16_call_back_later_lands_in_my_work_shared_or_personal(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=2)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    colleague = await connect(nodes[1].ws, shop.token(shop.agents[1]))
    try:
        screen = await start(agent, shop)
        first = screen["customer"]["id"]
        reply = ok(
            await agent.request(
                "customer.attempt", customer_id=first, selection_token=screen["selection_token"],
                kind="call_back_later", at=later(0.5), next="my_work",
            )
        )  # fmt: skip
        assert reply["screen"] is None
        screen = await start(agent, shop)
        second = screen["customer"]["id"]
        screen = ok(
            await agent.request(
                "customer.save", customer_id=second, selection_token=screen["selection_token"],
                outcome_id="interested", follow_up_at=later(0.6), next="continue",
            )
        )["screen"]  # fmt: skip
        ok(
            await agent.request(
                "customer.attempt", customer_id=second, selection_token=screen["selection_token"],
                kind="call_back_later", at=later(0.7), next="my_work",
            )
        )  # fmt: skip
        mine = ok(await agent.request("my_work.get"))
        theirs = ok(await colleague.request("my_work.get"))
        all_mine = [f for k in ("today_mine", "overdue_mine") for f in mine[k]]
        all_shared = [f for k in ("today_shared", "overdue_shared") for f in mine[k]]
        if all_mine or all_shared:  # "today" ends at local midnight: late runs see tomorrow
            assert [f["customer_id"] for f in all_shared] == [first]
            assert [(f["customer_id"], f["kind"]) for f in all_mine] == [(second, "personal")]
            assert [f["customer_id"] for f in theirs["today_shared"]] == [first]
            assert theirs["today_mine"] == []
        details = ok(await agent.request("customer.get", customer_id=second))
        created = [h for h in details["history"] if h["kind"] == "follow_up_created"]
        assert [h["data"]["kind"] for h in created] == ["personal", "personal"]
    finally:
        await agent.close()
        await colleague.close()


async def test_rule_15_18_outcomes_valid_from_the_status_with_details_and_follow_ups(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        assert [o["id"] for o in screen["allowed_outcomes"]] == [
            "interested",
            "sale",
            "not_interested",
        ]
        fields = holding(screen)
        refused(
            await agent.request("customer.save", outcome_id="call_team", **fields),
            "invalid_transition",
        )
        refused(await agent.request("customer.save", outcome_id="sale", **fields), "invalid")
        refused(await agent.request("customer.save", outcome_id="interested", **fields), "invalid")
        screen = ok(
            await agent.request(
                "customer.save", outcome_id="interested", follow_up_at=later(24), next="continue",
                **fields,
            )
        )["screen"]  # fmt: skip
        assert screen["status"] == "interested"
        assert [o["id"] for o in screen["allowed_outcomes"]] == ["sale", "call_team"]
        assert [f["customer_id"] for f in screen["side_panel"]["upcoming_mine"]] == [
            fields["customer_id"]
        ]
        screen = ok(
            await agent.request(
                "customer.save", outcome_id="sale", details={"amount": "990.5"}, next="continue",
                **fields,
            )
        )["screen"]  # fmt: skip
        assert screen["status"] == "sale" and screen["side_panel"]["upcoming_mine"] == []
        outcome = next(h for h in screen["history"] if h["kind"] == "outcome")
        assert outcome["data"]["details"] == {"amount": 990.5}
    finally:
        await agent.close()


async def test_rule_17_next_choices_and_defaults_over_the_wire(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=4)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        manual = ok(await agent.request("customer.select", customer_id=str(shop.customer_ids[3])))
        screen = manual["screen"]
        assert screen["mode"] == "manual" and screen["next_options"] == ["my_work", "continue"]
        fields = holding(screen)
        refused(
            await agent.request(
                "customer.attempt", kind="no_answer", next="next_from_list", **fields
            ),
            "invalid",
        )
        assert (
            ok(await agent.request("customer.attempt", kind="no_answer", **fields))["screen"]
            is None
        )
        screen = await start(agent, shop)
        fields = holding(screen)
        same = ok(
            await agent.request(
                "customer.save", outcome_id="not_interested", next="continue", **fields
            )
        )
        assert same["screen"]["customer"]["id"] == fields["customer_id"]
        assert same["screen"]["selection_token"] == fields["selection_token"]
        nxt = ok(await agent.request("customer.attempt", kind="no_answer", **fields))["screen"]
        assert nxt is not None and nxt["customer"]["id"] != fields["customer_id"]
        back = ok(
            await agent.request(
                "customer.attempt", customer_id=nxt["customer"]["id"],
                selection_token=nxt["selection_token"], kind="no_answer", next="my_work",
            )
        )  # fmt: skip
        assert back["screen"] is None
        assert ok(await agent.request("work.resume"))["screen"] is None
    finally:
        await agent.close()


async def test_rule_04_06_select_answers_who_holds_and_what_the_user_holds(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=3)
    a = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    b = await connect(nodes[1].ws, shop.token(shop.agents[1]))
    try:
        target = str(shop.customer_ids[0])
        held = ok(await a.request("customer.select", customer_id=target))["screen"]
        error = refused(await b.request("customer.select", customer_id=target), "already_selected")
        assert error["held_by"] == str(shop.agents[0].id) and error["since"]
        error = refused(
            await a.request("customer.select", customer_id=str(shop.customer_ids[1])),
            "user_has_selection",
        )
        assert error["customer_id"] == target
        details = ok(await b.request("customer.get", customer_id=target))
        assert details["held_by"]["user_id"] == str(shop.agents[0].id)
        assert details["held_by"]["user_name"] == "Agent 0" and details["can_select"] is False
        # Rule 9: the same user selecting it again (a second tab) gets the same selection.
        again = ok(await a.request("customer.select", customer_id=target))["screen"]
        assert again["selection_token"] == held["selection_token"]
    finally:
        await a.close()
        await b.close()


async def test_rule_03_another_data_owners_ids_are_not_found(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    mine, theirs = await new_shop(customers=1), await new_shop(customers=1)
    agent = await connect(nodes[0].ws, mine.token(mine.agents[0]))
    try:
        refused(
            await agent.request("work.start", assignment_id=str(theirs.assignment_id)), "not_found"
        )
        refused(
            await agent.request("customer.select", customer_id=str(theirs.customer_ids[0])),
            "not_found",
        )
        refused(
            await agent.request("customer.get", customer_id=str(theirs.customer_ids[0])),
            "not_found",
        )
        refused(
            await agent.request(
                "customer.save", customer_id=str(theirs.customer_ids[0]), selection_token="1",
                outcome_id="sale",
            ),
            "selection_lost",
        )  # fmt: skip
    finally:
        await agent.close()


async def test_rule_05_only_the_holder_edits_crm_fields(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    a = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    b = await connect(nodes[1].ws, shop.token(shop.agents[1]))
    try:
        screen = await start(a, shop)
        fields = holding(screen)
        refused(await b.request("customer.edit", info={"x": 1}, **fields), "selection_lost")
        refused(await a.request("customer.edit", info={"unknown": 1}, **fields), "invalid")
        # The screen and the details name the CRM's fields, also one with no value yet.
        defined = [{"key": "municipality", "label": "Municipality", "type": "text"}]
        assert screen["info_fields"] == defined and "municipality" not in screen["customer"]["info"]
        edited = ok(await a.request("customer.edit", info={"municipality": "Bodø"}, **fields))
        assert edited["info"]["municipality"] == "Bodø"
        details = ok(await b.request("customer.get", customer_id=screen["customer"]["id"]))
        assert details["info_fields"] == defined
        assert details["customer"]["info"]["municipality"] == "Bodø"
    finally:
        await a.close()
        await b.close()


async def test_a_retried_request_is_applied_once_with_the_same_answer(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    import json

    shop = await new_shop(customers=3)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        frame = {
            "id": "retry-1",
            "type": "customer.attempt",
            **holding(screen),
            "kind": "no_answer",
        }
        await agent.ws.send(json.dumps(frame))
        first = await agent.reply_to("retry-1")
        await agent.close()
        agent = await connect(nodes[1].ws, shop.token(shop.agents[0]))  # reconnect elsewhere
        await agent.ws.send(json.dumps(frame))
        second = await agent.reply_to("retry-1")
        assert first == second and first["ok"]
        details = ok(await agent.request("customer.get", customer_id=screen["customer"]["id"]))
        assert details["customer"]["attempts"] == 1
    finally:
        await agent.close()


async def test_rule_24_history_records_who_did_what(
    nodes: tuple[Node, Node], new_shop: Any
) -> None:
    shop = await new_shop(customers=1)
    agent = await connect(nodes[0].ws, shop.token(shop.agents[0]))
    supervisor = await connect(nodes[1].ws, shop.token(shop.supervisor))
    try:
        screen = await start(agent, shop)
        customer = screen["customer"]["id"]
        fields = holding(screen)
        screen = ok(
            await agent.request("customer.attempt", kind="no_answer", next="continue", **fields)
        )["screen"]
        ok(
            await agent.request(
                "customer.save",
                outcome_id="interested",
                follow_up_at=later(3),
                next="continue",
                **fields,
            )
        )
        ok(await supervisor.request("selection.release", customer_id=customer))
        await agent.event("selection.revoked", customer_id=customer)
        refused(
            await agent.request(
                "customer.save", outcome_id="sale", details={"amount": 1}, **fields
            ),
            "selection_lost",
        )
        history = ok(await supervisor.request("customer.get", customer_id=customer))["history"]
        kinds = [h["kind"] for h in reversed(history)]
        assert kinds == [
            "selected", "attempt", "outcome", "follow_up_created", "released",
        ]  # fmt: skip
        by = {h["kind"]: h for h in history}
        assert by["attempt"]["user_name"] == "Agent 0"
        assert by["released"]["user_id"] == str(shop.supervisor.id)
        assert by["released"]["data"]["holder_user_id"] == shop.agents[0].id
        assert all(h["at"] for h in history)
    finally:
        await agent.close()
        await supervisor.close()


SMS_FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(
        Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale", sms_template="Takk, {name}!"),
    ),
)


async def test_rule_23_a_node_sends_the_sms_of_an_outcome_once(
    spare_node: Any, new_shop: Any, engine: AsyncEngine, node_dir: Path
) -> None:
    node = spare_node(DIALHUB_SMS_INTERVAL="0.2")
    setup = AssignmentSetup(auto_sms=True, max_attempts=None, retry_delay=timedelta(0))
    shop = await new_shop(customers=1, flow=SMS_FLOW, setup=setup)
    agent = await connect(node.ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        ok(
            await agent.request(
                "customer.save", customer_id=screen["customer"]["id"],
                selection_token=screen["selection_token"], outcome_id="sale", next="my_work",
            )
        )  # fmt: skip
        sent: list[Any] = []
        for _ in range(100):  # bounded: 10 s
            details = ok(await agent.request("customer.get", customer_id=screen["customer"]["id"]))
            sent = [h for h in details["history"] if h["kind"] == "sms"]
            if sent:
                break
            await asyncio.sleep(0.1)
        assert len(sent) == 1
        lines = (node_dir / "sms-outbox.jsonl").read_text().splitlines()
        mine = [json.loads(line) for line in lines if "Customer 0" in line]
        assert [m["body"] for m in mine if m["to"] == "+4790000000"][-1:] == ["Takk, Customer 0!"]
    finally:
        await agent.close()
