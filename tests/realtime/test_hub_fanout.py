"""Supervisor fan-out: one publish per event reaches every watcher on every node, each with its
own seq, and the frame a watcher gets live is the frame it gets again on resume."""

from __future__ import annotations

import asyncio
from typing import Any

from hub_kit import Node, connect, expect_events_after_a_cut, subscribers
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from presence.agents import AgentPresence, UserEvents, event_frame, watchers_channel
from realtime.events import SelectionRow, selection_made, selection_released
from realtime.services import Services


async def test_selected_changed_reaches_every_watcher_on_every_node(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    watching = [
        await connect(node_a.ws, tenant.token(tenant.supervisor)),
        await connect(node_b.ws, tenant.token(tenant.supervisor)),
        await connect(node_a.ws, tenant.token(tenant.admin)),
    ]
    idle = await connect(node_b.ws, tenant.token(tenant.admin))  # never watches
    agent_tab = await connect(node_b.ws, tenant.token(agent))
    try:
        for client in watching:
            assert (await client.request("selected.watch"))["data"] == {"rows": []}
        assert (await idle.request("ping"))["ok"]
        assert (await agent_tab.request("ping"))["ok"]

        selection = await services.selections.select(tenant.owner, agent.id, tenant.customer_ids[0])
        await selection_made(services, selection)
        customer_id = str(tenant.customer_ids[0])
        got = [await c.event("selected.changed", customer_id=customer_id) for c in watching]

        for frame in got:
            assert frame["data"]["op"] == "selected"
            assert frame["data"]["user_name"] == agent.name
            assert frame["data"]["customer_name"] == "Customer 0"
            assert frame["data"]["online"] is True
            row = SelectionRow.model_validate(frame["data"]["row"]).model_dump()
            assert row == frame["data"]["row"]
        supervisor_a, supervisor_b, admin_a = got
        assert supervisor_a["seq"] == supervisor_b["seq"], "one event, one seq per user"
        assert supervisor_a["data"] == admin_a["data"]

        # The overview answers the same row the event carried.
        again = await connect(node_b.ws, tenant.token(tenant.admin))
        rows = (await again.request("selected.watch"))["data"]["rows"]
        assert rows == [admin_a["data"]["row"]]

        await idle.request("ping")
        assert not [e for e in idle.events if e["event"] == "selected.changed"]

        released = await services.selections.release(
            tenant.owner, selection.customer_id, tenant.supervisor.id, supervisor=True
        )
        assert released is not None
        await selection_released(services, released, tenant.supervisor)
        for client in [*watching, again]:
            gone = await client.event("selected.changed", customer_id=customer_id, op="released")
            assert gone["data"]["user_id"] == str(agent.id)
        await again.close()
    finally:
        for client in [*watching, idle, agent_tab]:
            await client.close()


async def test_watcher_frames_are_stored_as_sent(new_tenant: Any, services: Services) -> None:
    """The node builds a watcher's frame from the one publish; replay reads the stream: the
    two texts must be the same for a client to see one event, not two."""
    tenant = await new_tenant()
    events: UserEvents = services.events
    presence: AgentPresence = services.presence
    watcher = tenant.supervisor.id
    await events.watch(tenant.owner, watcher, 2**62)
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(watchers_channel(tenant.owner))
    try:
        await presence.set_state(tenant.owner, tenant.agents[0].id, "paused")
        message = None
        for _ in range(100):  # bounded: the publish is already done
            message = await pubsub.get_message(timeout=0.05)
            if message is not None:
                break
        assert message is not None
        _started, event, to, data = message["data"].split("|", 3)
        assert event == "presence.changed"
        user, seq = to.split(":")
        assert user == str(watcher)
        frames, _last = await events.since(tenant.owner, watcher, int(seq) - 1, 10)
        assert frames == [(int(seq), event_frame(int(seq), event, data))]
    finally:
        await pubsub.aclose()


async def test_a_user_arriving_as_its_last_connection_leaves_stays_subscribed(
    new_tenant: Any, services: Services
) -> None:
    """The last connection of a user leaving and a new one arriving at the same moment: the
    node's pub/sub must end up subscribed to the user's channel (an unsubscribe landing after
    the subscribe would leave the new connection deaf to its own kick)."""
    from starlette.websockets import WebSocket

    from presence.agents import channel
    from realtime.connection import Connection
    from realtime.hub import Hub

    tenant = await new_tenant()
    agent = tenant.agents[0]
    name = channel(tenant.owner, agent.id)
    hub = Hub(services)
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}

    def connection() -> Connection:  # never sends: only its place in the hub is exercised
        return Connection(WebSocket(scope, _receive, _send), agent, services, hub)

    try:
        current = connection()
        await hub.register(current)
        for _ in range(100):
            arriving = connection()
            await asyncio.gather(hub.unregister(current), hub.register(arriving))
            assert await subscribers([services.redis], name) == 1
            current = arriving
        await hub.unregister(current)
        assert await subscribers([services.redis], name) == 0
    finally:
        await hub.pubsub.aclose()


async def _receive() -> dict[str, Any]:
    return {"type": "websocket.disconnect"}


async def _send(_message: dict[str, Any]) -> None:
    return None


async def test_an_agents_own_select_and_stop_show_its_and_the_customers_names(
    nodes: tuple[Node, Node], new_tenant: Any, engine: AsyncEngine
) -> None:
    """The rows of a selection the agent made and ended itself carry the names of the agent
    and the customer, as the supervisors' overview shows them."""
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    async with engine.begin() as conn:
        await repo.grant(conn, agent.id, tenant.assignment_id)
    watcher = await connect(node_a.ws, tenant.token(tenant.supervisor))
    agent_tab = await connect(node_b.ws, tenant.token(agent))
    try:
        await watcher.request("selected.watch")
        customer_id = str(tenant.customer_ids[1])
        answer = await agent_tab.request("customer.select", customer_id=customer_id)
        assert answer["ok"], answer
        made = await watcher.event("selected.changed", customer_id=customer_id, op="selected")
        assert (await agent_tab.request("work.stop"))["ok"]
        gone = await watcher.event("selected.changed", customer_id=customer_id, op="released")
        for frame in (made, gone):
            assert frame["data"]["user_name"] == agent.name
            assert frame["data"]["customer_name"] == "Customer 1"
            assert frame["data"]["row"]["customer_name"] == "Customer 1"
    finally:
        await watcher.close()
        await agent_tab.close()


async def test_nodes_hear_events_again_after_their_pub_sub_connections_are_cut(
    nodes: tuple[Node, Node], new_shop: Any, redis_client: Any
) -> None:
    """Every pub/sub connection killed at once (a network cut, a Redis restart): each node
    subscribes again, and the next change and the next kick reach their connections."""
    await expect_events_after_a_cut(nodes, new_shop, [redis_client])
