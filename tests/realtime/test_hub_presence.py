"""Presence across tabs and nodes, and rule 9: selections outlive connections and nodes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import websockets
from hub_kit import PRESENCE_TIMEOUT, WAIT, Node, connect

from realtime.events import selection_made
from realtime.services import Services

OFFLINE_WAIT = PRESENCE_TIMEOUT * 2 + WAIT
"""Bound on waiting for a user to go offline: the timeout, a sweep, and slack."""


async def test_supervisors_see_presence_change_across_nodes(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    supervisor = await connect(node_a.ws, tenant.token(tenant.supervisor))
    snapshot = await supervisor.request("presence.watch")
    rows = {r["user_id"]: r for r in snapshot["data"]["users"]}
    assert rows[str(agent.id)]["online"] is False and rows[str(agent.id)]["state"] == "offline"

    tab1 = await connect(node_b.ws, tenant.token(agent))
    joined = await supervisor.event("presence.changed", user_id=str(agent.id))
    assert joined["data"]["online"] is True and joined["data"]["state"] == "available"
    tab2 = await connect(node_a.ws, tenant.token(agent))
    assert (await tab2.request("ping"))["ok"]

    paused = await tab1.request("presence.set", state="paused")
    assert paused["data"] == {"state": "paused"}
    changed = await supervisor.event("presence.changed", user_id=str(agent.id))
    assert changed["data"]["state"] == "paused"
    assert (await tab1.request("presence.set", state="available"))["data"]["state"] == "available"
    await supervisor.event("presence.changed", user_id=str(agent.id), state="available")

    selection = await services.selections.select(tenant.owner, agent.id, tenant.customer_ids[0])
    await selection_made(services, selection)
    working = await supervisor.event("presence.changed", user_id=str(agent.id), state="working")
    assert working["data"]["customer_id"] == str(tenant.customer_ids[0])

    # One tab closing keeps the user online; the last one going makes it offline after the
    # timeout, and the selection stays (rule 9).
    await tab1.close()
    await asyncio.sleep(PRESENCE_TIMEOUT + 1.0)
    assert not [e for e in supervisor.events if e["data"].get("online") is False]
    await tab2.close()
    gone = await supervisor.event(
        "presence.changed", within=OFFLINE_WAIT, user_id=str(agent.id), online=False
    )
    assert gone["data"]["state"] == "offline"
    assert gone["data"]["customer_id"] == str(tenant.customer_ids[0])
    assert await services.selections.current(tenant.owner, agent.id) == selection
    await supervisor.close()


async def test_rule_09_selection_survives_disconnect(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[1]
    selection = await services.selections.select(tenant.owner, agent.id, tenant.customer_ids[2])
    first = await connect(node_a.ws, tenant.token(agent))
    assert (await first.request("resume"))["data"]["selection"]["customer_id"] == str(
        selection.customer_id
    )
    await first.close()
    again = await connect(node_b.ws, tenant.token(agent))
    back = (await again.request("resume"))["data"]["selection"]
    assert back["customer_id"] == str(selection.customer_id)
    assert back["selection_token"] == str(selection.token)
    await again.close()


async def test_rule_09_a_killed_node_agents_land_back_in_their_selection_elsewhere(
    nodes: tuple[Node, Node],
    spare_node: Callable[..., Node],
    new_tenant: Any,
    services: Services,
) -> None:
    node_a, _ = nodes
    victim = spare_node()
    tenant = await new_tenant()
    stays, leaves = tenant.agents[0], tenant.agents[1]
    held = {
        user.id: await services.selections.select(tenant.owner, user.id, tenant.customer_ids[i])
        for i, user in enumerate((stays, leaves))
    }
    for selection in held.values():
        await selection_made(services, selection)
    supervisor = await connect(node_a.ws, tenant.token(tenant.supervisor))
    await supervisor.request("presence.watch")
    on_victim = [await connect(victim.ws, tenant.token(u)) for u in (stays, leaves)]
    seqs = {}
    for user, client in zip((stays, leaves), on_victim, strict=True):
        reply = await client.request("resume")
        seqs[user.id] = reply["data"]["seq"]
        await supervisor.event("presence.changed", user_id=str(user.id), state="working")

    victim.kill()
    for client in on_victim:  # the clients notice the connection is gone
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await asyncio.wait_for(client.ws.recv(), WAIT)

    moved = await connect(node_a.ws, tenant.token(stays))
    reply = await moved.request("resume", last_seq=seqs[stays.id])
    assert reply["data"]["resync"] is False
    selection = reply["data"]["selection"]
    assert selection["customer_id"] == str(held[stays.id].customer_id)
    assert selection["selection_token"] == str(held[stays.id].token)

    # The agent that did not come back goes offline once its leases run out, announced once
    # although every node sweeps; the one that moved stays online throughout.
    gone = await supervisor.event(
        "presence.changed", within=OFFLINE_WAIT, user_id=str(leaves.id), online=False
    )
    assert gone["data"]["customer_id"] == str(held[leaves.id].customer_id)
    await asyncio.sleep(PRESENCE_TIMEOUT + 1.0)
    stays_offline = [
        e
        for e in supervisor.events
        if e["data"].get("user_id") == str(stays.id) and e["data"].get("online") is False
    ]
    assert stays_offline == []
    again = [e for e in supervisor.events if e["data"].get("user_id") == str(leaves.id)]
    assert again == [], "the leave was published once"
    snapshot = await supervisor.request("presence.watch")
    rows = {r["user_id"]: r for r in snapshot["data"]["users"]}
    assert rows[str(stays.id)]["online"] is True and rows[str(stays.id)]["state"] == "working"
    assert rows[str(leaves.id)]["online"] is False
    assert await services.selections.current(tenant.owner, leaves.id) == held[leaves.id]
    await moved.close()
    await supervisor.close()


async def test_graceful_shutdown_closes_1012_with_a_jittered_retry_hint(
    spare_node: Callable[..., Node], new_tenant: Any
) -> None:
    node = spare_node()
    tenant = await new_tenant()
    clients = [await connect(node.ws, tenant.token(a)) for a in tenant.agents]
    for client in clients:
        assert (await client.request("ping"))["ok"]
    node.process.send_signal(15)
    hints = []
    for client in clients:
        try:
            await asyncio.wait_for(client.ws.recv(), WAIT)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1012
            reason = json.loads(closed.rcvd.reason)
            assert reason["reconnect"] is True
            assert 200 <= reason["retry_after_ms"] <= 900
            hints.append(reason["retry_after_ms"])
    assert len(hints) == len(clients)
    assert node.process.wait(timeout=30) == 0
