"""Dialing over the wire: two real nodes whose simulated phone system answers after a short
ring, with fixed fates for numbers ending in 91 (busy) and 92 (no answer); preview, progressive
and predictive lists, the attempts calls register by themselves, DNC, and the end of dialing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hub_kit import Client, Node, connect, start_node
from shop_kit import Shop, ok, refused, start
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import dnc
from domain.db import tables as t
from domain.model import AssignmentSetup, DialMode

WAIT = 10.0
SIM = {
    "DIALHUB_SIM_ANSWER": "1",
    "DIALHUB_SIM_BUSY": "0",
    "DIALHUB_SIM_RING": "0.3",
    "DIALHUB_SIM_TALK": "600",
    "DIALHUB_SIM_NO_ANSWER": "0.4",
    "DIALHUB_SIM_FATES": json.dumps({"91": "busy", "92": "no_answer"}),
    # The pacer expects few answers, so it dials ahead of two agents; every call is answered.
    "DIALHUB_PACING_PRIOR_ANSWER": "0.05",
}


@pytest.fixture(scope="module")
def phone_nodes(hub_env: dict[str, str], node_dir: Path) -> Iterator[tuple[Node, Node]]:
    """Two nodes whose phone system is the simulator with short rings."""
    started: list[Node] = []
    try:
        started.append(start_node(hub_env, node_dir, **SIM))
        started.append(start_node(hub_env, node_dir, **SIM))
        yield started[0], started[1]
    finally:
        for node in started:
            node.kill()


def setup(mode: DialMode, **options: Any) -> AssignmentSetup:
    return AssignmentSetup(
        dial_mode=mode, max_attempts=5, retry_delay=timedelta(hours=1), **options
    )


async def set_phones(engine: AsyncEngine, shop: Shop, endings: list[str]) -> None:
    """Customer i gets a number ending in endings[i] (the simulator's fates)."""
    async with engine.begin() as conn:
        for i, (customer_id, ending) in enumerate(zip(shop.customer_ids, endings, strict=False)):
            phone = f"+47900{i:03d}{ending}"
            await conn.execute(
                update(t.customers).where(t.customers.c.id == customer_id).values(phones=[phone])
            )


async def calls_of(engine: AsyncEngine, owner: int) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(t.calls).where(t.calls.c.data_owner_id == owner).order_by(t.calls.c.dialed_at)
        )
        return list(rows.all())


async def attempts_of(engine: AsyncEngine, customer_id: int) -> int:
    async with engine.connect() as conn:
        row = await conn.execute(
            select(t.customers.c.attempts).where(t.customers.c.id == customer_id)
        )
        return int(row.scalar_one())


async def until(check: Any, within: float = WAIT) -> Any:
    """Poll an async check until it answers something truthy (bounded)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_preview_call_answered_hung_up_wraps_up_and_saves(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=2, setup=setup(DialMode.PREVIEW, wrap_up_seconds=120))
    await set_phones(engine, shop, ["00", "00"])
    agent = await connect(phone_nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        customer = screen["customer"]["id"]
        assert not [e for e in agent.events if e["event"] == "call.state"]  # preview: no call
        dialed = ok(
            await agent.request(
                "call.dial", customer_id=customer, selection_token=screen["selection_token"]
            )
        )
        assert dialed["dialing"]["state"] == "dialing"
        answered = await agent.event("call.state", WAIT, state="answered")
        assert answered["data"]["call_id"] == dialed["call_id"]
        talking = await agent.event("dialing.changed", WAIT, state="talking")
        assert talking["data"]["customer_id"] == customer
        wrap = ok(await agent.request("call.hang_up"))["dialing"]
        assert wrap["state"] == "wrap_up" and wrap["deadline"] is not None
        deadline = datetime.fromisoformat(wrap["deadline"])
        assert deadline - datetime.fromisoformat(wrap["since"]) == timedelta(seconds=120)
        ended = await agent.event("call.state", WAIT, state="ended")
        assert ended["data"]["result"] == "answered"
        saved = ok(
            await agent.request(
                "customer.save",
                customer_id=customer,
                selection_token=screen["selection_token"],
                outcome_id="sale",
                details={"amount": 10},
            )
        )
        assert saved["screen"]["customer"]["id"] != customer  # preview: the next one, no call
        assert ok(await agent.request("call.state"))["dialing"]["state"] == "off"
        rows = await calls_of(engine, shop.owner)
        assert [(r.result, r.agent_user_id, r.mode) for r in rows] == [
            ("answered", shop.agents[0].id, "preview")
        ]
    finally:
        await agent.close()


async def test_rule_08_a_supervisor_release_ends_the_agents_call(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=2, setup=setup(DialMode.PREVIEW, wrap_up_seconds=120))
    await set_phones(engine, shop, ["00", "00"])
    agent = await connect(phone_nodes[0].ws, shop.token(shop.agents[0]))
    supervisor = await connect(phone_nodes[1].ws, shop.token(shop.supervisor))
    try:
        screen = await start(agent, shop)
        customer = screen["customer"]["id"]
        ok(
            await agent.request(
                "call.dial", customer_id=customer, selection_token=screen["selection_token"]
            )
        )
        await agent.event("call.state", WAIT, state="answered")
        # Released from the other node while the agent talks: thrown out, and the call ends.
        ok(await supervisor.request("selection.release", customer_id=customer))
        revoked = await agent.event("selection.revoked", WAIT, customer_id=customer)
        assert revoked["data"]["reason"] == "released"
        ended = await agent.event("call.state", WAIT, state="ended")
        assert ended["data"]["customer_id"] == customer

        async def dialing_off() -> bool:
            return ok(await agent.request("call.state"))["dialing"]["state"] == "off"

        await until(dialing_off)  # no talk, no wrap-up timer for a customer it lost
        rows = await calls_of(engine, shop.owner)
        assert [(r.result, r.customer_id) for r in rows] == [("answered", int(customer))]
    finally:
        await agent.close()
        await supervisor.close()


async def test_a_paused_agent_gets_no_next_customer_until_it_is_back(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=2, setup=setup(DialMode.PROGRESSIVE))
    await set_phones(engine, shop, ["92", "00"])  # the first is not answered
    agent = await connect(phone_nodes[0].ws, shop.token(shop.agents[0]))
    try:
        reply = ok(await agent.request("work.start", assignment_id=str(shop.assignment_id)))
        first = reply["screen"]["customer"]["id"]
        # A break while the first call rings: that call runs its course, nothing follows it.
        assert ok(await agent.request("presence.set", state="paused"))["state"] == "paused"
        await agent.event("call.state", WAIT, state="ended", result="no_answer")
        await agent.event("dialing.changed", WAIT, state="available")
        state = ok(await agent.request("call.state"))["dialing"]
        assert state["state"] == "available" and state["customer_id"] is None
        pushed = [e["data"]["screen"]["customer"]["id"] for e in agent.events
                  if e["event"] == "work.pushed" and e["data"]["screen"]]  # fmt: skip
        assert pushed in ([], [first])  # the first one's push, if not taken yet: no second
        # Back from the break: the next customer is pushed and called.
        ok(await agent.request("presence.set", state="available"))
        while True:
            event = await agent.event("work.pushed", WAIT)
            if event["data"]["screen"]["customer"]["id"] != first:
                break
        await agent.event("call.state", WAIT, state="answered")
    finally:
        await agent.close()


async def test_progressive_calls_on_push_and_busy_or_no_answer_register_attempts(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=3, setup=setup(DialMode.PROGRESSIVE))
    await set_phones(engine, shop, ["91", "92", "00"])
    agent = await connect(phone_nodes[1].ws, shop.token(shop.agents[0]))
    try:
        reply = ok(await agent.request("work.start", assignment_id=str(shop.assignment_id)))
        assert reply["screen"] is not None and reply["dialing"]["state"] == "dialing"
        first = reply["screen"]["customer"]["id"]
        busy = await agent.event("call.state", WAIT, state="ended", result="busy")
        no_answer = await agent.event("call.state", WAIT, state="ended", result="no_answer")
        answered = await agent.event("call.state", WAIT, state="answered")
        assert busy["data"]["customer_id"] == first
        # Each call started as its customer was pushed, without a request of the agent.
        pushed = [e["data"]["screen"]["customer"]["id"] for e in agent.events if
                  e["event"] == "work.pushed" and e["data"]["screen"]]  # fmt: skip
        assert no_answer["data"]["customer_id"] in pushed
        assert answered["data"]["customer_id"] in pushed
        for ended in (busy, no_answer):
            assert await attempts_of(engine, int(ended["data"]["customer_id"])) == 1
        assert await attempts_of(engine, int(answered["data"]["customer_id"])) == 0
        results = sorted(r.result for r in await calls_of(engine, shop.owner))
        assert results == ["busy", "no_answer"]
    finally:
        await agent.close()


async def test_dnc_number_is_refused_with_do_not_call(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(customers=1, setup=setup(DialMode.PREVIEW))
    await set_phones(engine, shop, ["00"])
    agent = await connect(phone_nodes[0].ws, shop.token(shop.agents[0]))
    try:
        screen = await start(agent, shop)
        async with engine.begin() as conn:
            for phone in screen["customer"]["phones"]:
                await dnc.add(conn, shop.owner, phone, datetime.now(UTC))
        error = refused(
            await agent.request(
                "call.dial",
                customer_id=screen["customer"]["id"],
                selection_token=screen["selection_token"],
            ),
            "do_not_call",
        )
        assert "do-not-call" in error["message"]
        assert await calls_of(engine, shop.owner) == []
    finally:
        await agent.close()


async def held_by(client: Client, customer_id: str) -> dict[str, Any] | None:
    return ok(await client.request("customer.get", customer_id=customer_id))["held_by"]


async def test_predictive_connects_answered_calls_abandons_and_stops_with_the_last_agent(
    phone_nodes: tuple[Node, Node], new_shop: Any, engine: AsyncEngine
) -> None:
    shop = await new_shop(
        customers=12, agents=2, setup=setup(DialMode.PREDICTIVE, wrap_up_seconds=None)
    )
    await set_phones(engine, shop, ["00"] * 12)
    agents = [
        await connect(phone_nodes[0].ws, shop.token(shop.agents[0])),
        await connect(phone_nodes[0].ws, shop.token(shop.agents[1])),
    ]
    try:
        for agent in agents:
            reply = ok(await agent.request("work.start", assignment_id=str(shop.assignment_id)))
            assert reply["screen"] is None and reply["dialing"]["state"] in ("available", "talking")
        pushed = [await agent.event("work.pushed", WAIT, answered=True) for agent in agents]
        customers = [p["data"]["screen"]["customer"]["id"] for p in pushed]
        assert customers[0] != customers[1]
        for agent, user, customer in zip(agents, shop.agents, customers, strict=True):
            # Rule 4: the pushed customer is held by exactly that agent.
            holder = await held_by(agent, customer)
            assert holder is not None and holder["user_id"] == str(user.id) and holder["mine"]
            await agent.event("dialing.changed", WAIT, state="talking")

        async def abandoned() -> list[Any]:
            return [r for r in await calls_of(engine, shop.owner) if r.result == "abandoned"]

        # More calls were answered than agents were free: nobody took them within 2 s.
        rows = await until(abandoned, 20)
        assert all(r.agent_user_id is None and r.answered_at is not None for r in rows)
        for agent in agents:
            ok(await agent.request("work.stop"))
        stopped = datetime.now(UTC)

        async def nothing_held() -> bool:
            for customer_id in shop.customer_ids:
                if await held_by(agents[0], str(customer_id)) is not None:
                    return False
            return True

        await until(nothing_held, WAIT)
        later_rows = [r for r in await calls_of(engine, shop.owner) if _utc(r.dialed_at) > stopped]
        assert later_rows == []  # dialing stopped with the last agent
    finally:
        for agent in agents:
            await agent.close()


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
