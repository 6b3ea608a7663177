"""Two nodes on a Redis Cluster (DIALHUB_REDIS_CLUSTER): the work loop, the supervisors' live
overview, a release that throws the agent out, presence and a replay after a reconnect, all
over the wire as on a single Redis. The nodes share the run's database and nothing else: every
lock, hopper, stream and event of these tests lives in the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hub_kit import Node, connect, start_node
from redis.asyncio.cluster import RedisCluster
from shop_kit import holding, ok, start
from test_hub_fanout import expect_events_after_a_cut

from presence.keys import live_key


@pytest.fixture(scope="module")
def cluster_nodes(
    hub_env: dict[str, str], node_dir: Path, redis_cluster_ports: list[int]
) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B whose Redis is the cluster; each is given a different node of it."""
    started: list[Node] = []
    try:
        for port in redis_cluster_ports[:2]:
            env = {**hub_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
            started.append(start_node(env, node_dir, DIALHUB_REDIS_CLUSTER="true"))
        yield started[0], started[1]
    finally:
        for node in started:
            node.kill()


async def test_list_work_and_the_live_overview_on_a_redis_cluster(
    cluster_nodes: tuple[Node, Node],
    new_shop: Any,
    redis_cluster_ports: list[int],
    redis_client: aioredis.Redis,
) -> None:
    node_a, node_b = cluster_nodes
    shop = await new_shop(customers=4)
    supervisor = await connect(node_a.ws, shop.token(shop.supervisor))
    agents = [
        await connect(node_b.ws, shop.token(shop.agents[0])),
        await connect(node_a.ws, shop.token(shop.agents[1])),
    ]
    try:
        assert ok(await supervisor.request("selected.watch")) == {"rows": []}
        first = await start(agents[0], shop)
        second = await start(agents[1], shop)
        assert first["customer"]["id"] != second["customer"]["id"]
        for screen in (first, second):
            made = await supervisor.event(
                "selected.changed", customer_id=screen["customer"]["id"], op="selected"
            )
            assert made["data"]["customer_name"] == screen["customer"]["name"]
        rows = ok(await supervisor.request("selected.watch"))["rows"]
        taken = {first["customer"]["id"], second["customer"]["id"]}
        assert {r["customer_id"] for r in rows} == taken
        # The locks are the cluster's (the run's single Redis has none of this owner's).
        cluster = RedisCluster(host="127.0.0.1", port=redis_cluster_ports[2], decode_responses=True)
        try:
            assert set(await cluster.hkeys(live_key(shop.owner))) == taken
        finally:
            await cluster.aclose()
        assert not await redis_client.exists(live_key(shop.owner))

        # Save and go on: the outcome, the release and the next claim (hopper) on the cluster.
        saved = ok(
            await agents[0].request(
                "customer.save", outcome_id="not_interested", next="next_from_list",
                **holding(first),
            )
        )  # fmt: skip
        following = saved["screen"]
        assert following is not None
        assert following["customer"]["id"] not in (
            first["customer"]["id"],
            second["customer"]["id"],
        )
        await supervisor.event(
            "selected.changed", customer_id=first["customer"]["id"], op="released"
        )
        await supervisor.event(
            "selected.changed", customer_id=following["customer"]["id"], op="selected"
        )
    finally:
        for client in (supervisor, *agents):
            await client.close()


async def test_rule_08_release_kicks_agent_out_on_a_redis_cluster(
    cluster_nodes: tuple[Node, Node], new_shop: Any
) -> None:
    node_a, node_b = cluster_nodes
    shop = await new_shop(customers=2)
    agent = shop.agents[0]
    tab = await connect(node_b.ws, shop.token(agent))
    supervisor = await connect(node_a.ws, shop.token(shop.supervisor))
    try:
        ok(await supervisor.request("selected.watch"))
        ok(await supervisor.request("presence.watch"))
        screen = await start(tab, shop)
        customer_id = screen["customer"]["id"]
        hello = ok(await tab.request("resume"))
        assert hello["selection"]["customer_id"] == customer_id
        working = await supervisor.event("presence.changed", user_id=str(agent.id), state="working")
        assert working["data"]["customer_id"] == customer_id

        released = ok(await supervisor.request("selection.release", customer_id=customer_id))
        assert released == {"released": True}
        revoked = await tab.event("selection.revoked")
        assert revoked["data"]["customer_id"] == customer_id
        assert revoked["data"]["released_by"]["id"] == str(shop.supervisor.id)
        gone = await supervisor.event("selected.changed", customer_id=customer_id, op="released")
        assert gone["data"]["user_id"] == str(agent.id)
        last_seq = revoked["seq"]
        await tab.close()

        # Back on the other node: the events after the one it names come from the user's stream.
        again = await connect(node_a.ws, shop.token(agent))
        reply = ok(await again.request("resume", last_seq=last_seq - 1))
        assert reply["selection"] is None
        assert reply["resync"] is False
        assert reply["replayed"] >= 1
        await again.close()
    finally:
        await supervisor.close()


async def test_nodes_on_a_redis_cluster_hear_events_again_after_their_pub_sub_is_cut(
    cluster_nodes: tuple[Node, Node], new_shop: Any, redis_cluster_ports: list[int]
) -> None:
    """The pub/sub connections of both nodes killed on every cluster node: each node
    subscribes again (on whichever cluster node), and changes and kicks flow on."""
    servers = [
        aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        for port in redis_cluster_ports
    ]
    try:
        await expect_events_after_a_cut(cluster_nodes, new_shop, servers)
    finally:
        for server in servers:
            await server.aclose()
