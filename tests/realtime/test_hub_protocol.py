"""The wire contract on a real node: tokens, origins, one reply per request, bad input."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hub_kit import SECRET, WAIT, Node, close_code, connect, make_tenant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from owners import forget_owner
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime.protocol import ERROR_CODES, EVENTS, REGISTRY
from realtime.tokens import issue_token

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


async def test_a_missing_expired_or_forged_token_closes_4401(
    nodes: tuple[Node, Node], new_tenant: Any
) -> None:
    node, _ = nodes
    tenant = await new_tenant()
    agent = tenant.agents[0]
    expired = issue_token(SECRET, agent.id, 60, now=datetime.now(UTC) - timedelta(hours=1)).token
    forged = issue_token("not-the-server-secret", agent.id, 3600).token
    for url in (
        node.ws,
        f"{node.ws}?token=",
        f"{node.ws}?token={expired}",
        f"{node.ws}?token={forged}",
        f"{node.ws}?token=garbage",
    ):
        assert await close_code(url) == 4401, url


async def test_a_foreign_origin_closes_4403_and_an_allowed_one_connects(
    nodes: tuple[Node, Node], new_tenant: Any
) -> None:
    node, _ = nodes
    tenant = await new_tenant()
    url = f"{node.ws}?token={tenant.token(tenant.agents[0])}"
    assert await close_code(url, origin="http://evil.example") == 4403
    client = await connect(url, None, origin="http://allowed.example")
    assert (await client.request("ping"))["ok"]
    await client.close()


async def test_ping_answers_once_with_the_same_id(nodes: tuple[Node, Node], new_tenant: Any):
    node, _ = nodes
    tenant = await new_tenant()
    client = await connect(node.ws, tenant.token(tenant.agents[0]))
    await client.ws.send(json.dumps({"id": "abc", "type": "ping"}))
    reply = json.loads(await asyncio.wait_for(client.ws.recv(), WAIT))
    assert reply["type"] == "reply" and reply["id"] == "abc" and reply["ok"] is True
    assert "now" in reply["data"]
    await client.close()


@pytest.mark.parametrize(
    ("frame", "echoed"),
    [
        ("not json", None),
        ("[1, 2]", None),
        ('{"type": "ping"}', None),
        ('{"id": "x1"}', "x1"),
        ('{"id": "x2", "type": "no.such.verb"}', "x2"),
        ('{"id": "x3", "type": "selection.release"}', "x3"),
        ('{"id": "x4", "type": "selection.release", "customer_id": "abc"}', "x4"),
        ('{"id": "x5", "type": "presence.set", "state": "asleep"}', "x5"),
        ('{"id": 7, "type": "ping"}', "7"),
        ('{"id": "x6", "type": "resume", "last_seq": -1}', "x6"),
        ("[" * 5000 + "]" * 5000, None),
        ('{"id": "big", "type": "ping", "pad": "' + "x" * 70_000 + '"}', None),
    ],
)
async def test_a_malformed_frame_is_answered_invalid_and_the_connection_stays(
    nodes: tuple[Node, Node], new_tenant: Any, frame: str, echoed: str | None
) -> None:
    node, _ = nodes
    tenant = await new_tenant()
    client = await connect(node.ws, tenant.token(tenant.agents[0]))
    await client.ws.send(frame)
    reply = json.loads(await asyncio.wait_for(client.ws.recv(), WAIT))
    assert reply["type"] == "reply" and reply["ok"] is False
    assert reply["id"] == echoed
    assert reply["error"]["code"] == "invalid"
    assert reply["error"]["message"]
    assert (await client.request("ping"))["ok"], "the connection stays open"
    await client.close()


async def test_another_tenants_customer_is_not_found(
    nodes: tuple[Node, Node], new_tenant: Any, services: Any
) -> None:
    node, _ = nodes
    ours, theirs = await new_tenant(), await new_tenant()
    await services.selections.select(theirs.owner, theirs.agents[0].id, theirs.customer_ids[0])
    supervisor = await connect(node.ws, ours.token(ours.supervisor))
    for customer_id in (str(theirs.customer_ids[0]), "999999999999"):
        reply = await supervisor.request("selection.release", customer_id=customer_id)
        assert reply["ok"] is False and reply["error"]["code"] == "not_found", reply
    other_assignment = await supervisor.request(
        "selected.watch", assignment_id=str(theirs.assignment_id)
    )
    assert other_assignment["error"]["code"] == "not_found"
    assert await services.selections.current(theirs.owner, theirs.agents[0].id) is not None
    await supervisor.close()


async def test_an_agent_calling_supervisor_verbs_is_forbidden(
    nodes: tuple[Node, Node], new_tenant: Any
) -> None:
    node, _ = nodes
    tenant = await new_tenant()
    agent = await connect(node.ws, tenant.token(tenant.agents[0]))
    for verb in ("selected.watch", "presence.watch"):
        reply = await agent.request(verb)
        assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    await agent.close()


async def test_a_flood_is_answered_rate_limited(nodes: tuple[Node, Node], new_tenant: Any):
    node, _ = nodes
    tenant = await new_tenant()
    client = await connect(node.ws, tenant.token(tenant.agents[0]))
    frames = [json.dumps({"id": f"f{i}", "type": "ping"}) for i in range(120)]
    for frame in frames:
        await client.ws.send(frame)
    replies = [json.loads(await asyncio.wait_for(client.ws.recv(), WAIT)) for _ in frames]
    assert [r["id"] for r in replies] == [f"f{i}" for i in range(120)], "one reply each, in order"
    codes = {r["error"]["code"] for r in replies if not r["ok"]}
    assert codes == {"rate_limited"}
    await asyncio.sleep(1.0)
    assert (await client.request("ping"))["ok"], "the bucket refills"
    await client.close()


async def test_a_slow_reader_is_closed_and_others_are_not_held_up(
    nodes: tuple[Node, Node], new_tenant: Any, services: Any
) -> None:
    node, _ = nodes
    tenant = await new_tenant()
    slow_agent, quick_agent = tenant.agents[0], tenant.agents[1]
    # max_queue=1 and a small read buffer: the slow client stops reading from the socket.
    slow = await connect(node.ws, tenant.token(slow_agent), max_queue=1, max_size=2**24)
    quick = await connect(node.ws, tenant.token(quick_agent))
    assert (await slow.request("ping"))["ok"] and (await quick.request("ping"))["ok"]
    before = closes(node.metrics(), "4408")
    padding = "x" * 4000
    flood = {"p": padding}
    for _ in range(40):  # bounded: 40 x 100 events of 4 KB
        await asyncio.gather(
            *(
                services.events.to_users(tenant.owner, [slow_agent.id], "test.flood", flood)
                for _ in range(100)
            )
        )
        if closes(node.metrics(), "4408") > before:
            break
    assert closes(node.metrics(), "4408") > before, "the slow reader was closed"
    started = asyncio.get_running_loop().time()
    assert (await quick.request("ping"))["ok"]
    assert asyncio.get_running_loop().time() - started < WAIT
    with pytest.raises(websockets.ConnectionClosed):
        for _ in range(200_000):
            await asyncio.wait_for(slow.ws.recv(), WAIT)
    await quick.close()


def closes(metrics_text: str, code: str) -> float:
    found = re.search(rf'dialhub_ws_closes_total{{code="{code}"}} ([0-9.e+]+)', metrics_text)
    return float(found.group(1)) if found else 0.0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
VERBS = st.sampled_from([*REGISTRY.verbs, "nope", "", "selection.release "])
FRAMES = st.one_of(
    st.text(max_size=200),
    JSON.map(json.dumps),
    st.fixed_dictionaries(
        {"id": st.one_of(st.text(max_size=10), st.integers(), st.none()), "type": VERBS},
        optional={
            "customer_id": st.one_of(st.text(max_size=20), st.integers(), JSON),
            "state": st.one_of(st.sampled_from(["available", "paused", "x"]), JSON),
            "last_seq": st.one_of(st.integers(), JSON),
            "assignment_id": JSON,
        },
    ).map(json.dumps),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(FRAMES, min_size=1, max_size=8))
def test_fuzzed_frames_never_break_a_connection(
    nodes: tuple[Node, Node], fuzz_token: str, frames: list[str]
) -> None:
    node, _ = nodes

    async def exchange() -> None:
        async with websockets.connect(
            f"{node.ws}?token={fuzz_token}", compression=None, open_timeout=WAIT
        ) as ws:
            for frame in frames:
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                while reply.get("type") == "event":
                    reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert reply["type"] == "reply"
                assert reply["ok"] or reply["error"]["code"] in ERROR_CODES, reply
            await ws.send(json.dumps({"id": "last", "type": "ping"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert reply["id"] == "last" and reply["ok"]

    asyncio.run(exchange())


@pytest.fixture(scope="module")
async def fuzz_token(engine: AsyncEngine, redis_url: str) -> AsyncIterator[str]:
    """A supervisor of a tenant of its own: the fuzz may release and watch in it."""
    tenant = await make_tenant(engine, agents=1, customers=2)
    yield tenant.token(tenant.supervisor)
    await forget_owner(redis_url, tenant.owner)


def test_protocol_json_is_the_schema_of_every_verb_and_event(nodes: tuple[Node, Node]) -> None:
    node, _ = nodes
    schema = httpx.get(f"{node.http}/api/protocol.json", timeout=WAIT).json()
    client = json.dumps(schema["client"])
    for verb in REGISTRY.verbs:
        assert f'"{verb}"' in client, verb
    assert set(schema["events"]) >= {"selection.revoked", "selected.changed", "presence.changed"}
    assert set(schema["errors"]) == set(ERROR_CODES)
    assert "reply" in json.dumps(schema["server"])


def test_docs_name_every_verb_event_error_and_close_code() -> None:
    text = DOCS.read_text("utf-8")
    for name in [*REGISTRY.verbs, *EVENTS, *ERROR_CODES, "4401", "4403", "4408", "1012"]:
        assert f"`{name}`" in text, f"docs/protocol.md does not document {name}"
