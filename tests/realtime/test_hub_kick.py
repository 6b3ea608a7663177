"""Rule 8 across nodes: a release on one node throws the agent out on another, at once."""

from __future__ import annotations

from typing import Any

import pytest
from hub_kit import Node, Tenant, connect
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.errors import SelectionLost
from realtime.events import selection_made
from realtime.services import Services


async def select(services: Services, tenant: Tenant, agent: int, customer: int) -> Any:
    selection = await services.selections.select(
        tenant.owner, tenant.agents[agent].id, tenant.customer_ids[customer]
    )
    await selection_made(services, selection)
    return selection


async def test_rule_08_release_kicks_agent_out(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services, engine: AsyncEngine
) -> None:
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    selection = await select(services, tenant, 0, 0)
    customer_id = str(tenant.customer_ids[0])

    tabs = [
        await connect(node_b.ws, tenant.token(agent)),
        await connect(node_b.ws, tenant.token(agent)),
        await connect(node_a.ws, tenant.token(agent)),
    ]
    supervisor = await connect(node_a.ws, tenant.token(tenant.supervisor))
    try:
        watch = await supervisor.request("selected.watch")
        assert watch["ok"], watch
        assert [r["customer_id"] for r in watch["data"]["rows"]] == [customer_id]
        for tab in tabs:
            assert (await tab.request("ping"))["ok"]  # subscribed on its node

        reply = await supervisor.request("selection.release", customer_id=customer_id)
        assert reply == {"type": "reply", "id": reply["id"], "ok": True, "data": {"released": True}}

        seqs = set()
        for tab in tabs:
            revoked = await tab.event("selection.revoked")  # bounded wait: 5 s
            seqs.add(revoked["seq"])
            assert revoked["data"]["customer_id"] == customer_id
            assert revoked["data"]["released_by"] == {
                "id": str(tenant.supervisor.id),
                "name": tenant.supervisor.name,
            }
            assert revoked["data"]["message"]
            assert isinstance(revoked["seq"], int) and revoked["seq"] > 0
        assert len(seqs) == 1, "one event, one seq, on every connection of the user"

        changed = await supervisor.event("selected.changed", op="released")
        assert changed["data"]["customer_id"] == customer_id
        assert changed["data"]["row"]["user_id"] == str(agent.id)
        assert changed["data"]["user_name"] == agent.name

        # From that moment the server refuses any write the old screen still attempts.
        with pytest.raises(SelectionLost):
            async with engine.begin() as conn:
                await fencing.fence(conn, selection.customer_id, agent.id, selection.token)
        assert "dialhub_kick_seconds_count" in node_b.metrics()
    finally:
        for client in [*tabs, supervisor]:
            await client.close()


async def test_rule_08_a_holder_offline_learns_it_on_reconnect(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    node_a, node_b = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    await select(services, tenant, 0, 1)
    first = await connect(node_b.ws, tenant.token(agent))
    hello = await first.request("resume")
    assert hello["data"]["selection"]["customer_id"] == str(tenant.customer_ids[1])
    last_seq = hello["data"]["seq"]
    await first.close()

    supervisor = await connect(node_a.ws, tenant.token(tenant.supervisor))
    released = await supervisor.request(
        "selection.release", customer_id=str(tenant.customer_ids[1])
    )
    assert released["data"] == {"released": True}
    await supervisor.close()

    again = await connect(node_a.ws, tenant.token(agent))
    reply = await again.request("resume", last_seq=last_seq)
    assert reply["ok"], reply
    assert reply["data"]["selection"] is None
    assert reply["data"]["resync"] is False
    assert reply["data"]["replayed"] == 1
    revoked = await again.event("selection.revoked")
    assert revoked["seq"] == last_seq + 1
    assert revoked["data"]["customer_id"] == str(tenant.customer_ids[1])
    await again.close()


async def test_an_agent_releases_only_its_own_selection(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    node_a, _ = nodes
    tenant = await new_tenant()
    await select(services, tenant, 0, 0)
    other = await connect(node_a.ws, tenant.token(tenant.agents[1]))
    refused = await other.request("selection.release", customer_id=str(tenant.customer_ids[0]))
    assert refused["ok"] is False
    assert refused["error"]["code"] == "forbidden"
    await other.close()

    holder = await connect(node_a.ws, tenant.token(tenant.agents[0]))
    own = await holder.request("selection.release", customer_id=str(tenant.customer_ids[0]))
    assert own["data"] == {"released": True}
    assert await services.selections.current(tenant.owner, tenant.agents[0].id) is None
    await holder.close()


async def test_work_stop_releases_the_users_selection(
    nodes: tuple[Node, Node], new_tenant: Any, services: Services
) -> None:
    _, node_b = nodes
    tenant = await new_tenant()
    await select(services, tenant, 2, 3)
    agent = await connect(node_b.ws, tenant.token(tenant.agents[2]))
    stopped = await agent.request("work.stop")
    assert stopped["data"] == {"released": True, "customer_id": str(tenant.customer_ids[3])}
    again = await agent.request("work.stop")
    assert again["data"] == {"released": False}
    await agent.close()
