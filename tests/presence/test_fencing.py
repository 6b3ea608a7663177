"""Fencing tokens only grow, also across a Redis that lost its data; the store refuses to
select until the owner's locks are rebuilt from the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from domain.model import WorkMode
from presence.keys import HopperKey
from presence.selections import AlreadySelected, Holder, SelectionStore, StoreNotReady
from realtime.embedded import EmbeddedRedis

T0 = 1_700_000_000_000


async def test_not_ready_until_rebuilt(store_redis: Any, owner: int) -> None:
    store = SelectionStore(store_redis, clock=lambda: T0)
    hopper = HopperKey.of(1)
    assert not await store.is_ready(owner)
    with pytest.raises(StoreNotReady):
        await store.select(owner, 1, 100)
    await store.refill(owner, hopper, [100])
    with pytest.raises(StoreNotReady):
        await store.claim_next(owner, 1, hopper)
    assert await store.hopper_length(owner, hopper) == 1  # the refused claim popped nothing
    rebuilt = await store.rebuild(owner, [Holder(200, 2, 41, T0 - 5, 1, 3, WorkMode.LIST)], 40)
    assert (rebuilt.loaded, rebuilt.skipped, rebuilt.fence, rebuilt.already_ready) == (
        1,
        0,
        41,
        False,
    )
    assert await store.is_ready(owner)
    held = await store.holder(owner, 200)
    assert held is not None
    assert (held.user_id, held.token, held.since, held.segment_id) == (2, 41, T0 - 5, 3)
    assert held.mode is WorkMode.LIST
    assert await store.check_token(owner, 200, 2, 41)
    with pytest.raises(AlreadySelected):
        await store.select(owner, 1, 200)
    assert (await store.select(owner, 1, 100)).token == 42


async def test_rebuild_runs_once_so_concurrent_rebuilders_are_harmless(
    store_redis: Any, owner: int, locks_of
) -> None:
    store = SelectionStore(store_redis, clock=lambda: T0)
    holders = [(c, 1000 + c, 10 + c, T0, None, None, "manual") for c in range(1, 21)]
    results = await asyncio.gather(*(store.rebuild(owner, holders, 5) for _ in range(10)))
    assert sorted(r.already_ready for r in results) == [False] + [True] * 9
    assert sum(r.loaded for r in results) == 20
    assert {r.fence for r in results} == {30}
    (await locks_of(store.redis, owner)).assert_rule_4()
    assert len(await store.snapshot(owner)) == 20


async def test_rebuild_skips_holders_breaking_rule_4(store_redis: Any, owner: int) -> None:
    store = SelectionStore(store_redis, clock=lambda: T0)
    holders = [(1, 10, 5, T0, 1, 1, "list"), (1, 11, 6, T0, 1, 1, "list")]
    holders.append((2, 10, 7, T0, 1, 1, "list"))
    rebuilt = await store.rebuild(owner, holders, 0)
    assert (rebuilt.loaded, rebuilt.skipped, rebuilt.fence) == (1, 2, 7)
    assert await store.selected_among(owner, [1, 2]) == {1: 10}


async def test_mark_ready_raises_fence_to_high_water(store_redis: Any, owner: int) -> None:
    store = SelectionStore(store_redis, clock=lambda: T0)
    assert (await store.mark_ready(owner, 500)).fence == 500
    assert (await store.select(owner, 1, 1)).token == 501
    assert (await store.mark_ready(owner, 10)).already_ready


async def test_fencing_token_grows_across_flushall(tmp_path: Path) -> None:
    owner = 42
    with EmbeddedRedis(tmp_path / "private-redis") as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            store = SelectionStore(client, clock=lambda: T0)
            await store.load_scripts()
            await store.mark_ready(owner)
            tokens = []
            for customer_id in range(1, 6):
                selection = await store.select(owner, 1, customer_id)
                tokens.append(selection.token)
                await store.release(owner, customer_id, 1, token=selection.token)
            kept = await store.select(owner, 2, 99, assignment_id=7)
            high_water = kept.token  # what the database recorded

            await client.flushall()
            await client.script_flush()  # also forget the scripts: EVALSHA must reload them
            with pytest.raises(StoreNotReady):
                await store.select(owner, 1, 1)
            await store.rebuild(
                owner,
                [Holder(99, 2, kept.token, kept.since, 7, None, WorkMode.MANUAL)],
                min_fence=high_water,
            )
            assert await store.holder(owner, 99) == kept
            after = await store.select(owner, 1, 1)
            assert after.token > max(tokens) and after.token > kept.token
            assert not await store.check_token(owner, 1, 1, tokens[0])
        finally:
            await client.aclose()


async def test_fencing_token_grows_across_restart(tmp_path: Path) -> None:
    owner = 43
    server = EmbeddedRedis(tmp_path / "restarted-redis").start()
    try:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        store = SelectionStore(client, clock=lambda: T0)
        await store.mark_ready(owner)
        before = await store.select(owner, 1, 1)
        await client.aclose()
        server.kill()  # a crash: nothing was on disk
        server.start()
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        store = SelectionStore(client, clock=lambda: T0)
        with pytest.raises(StoreNotReady):
            await store.select(owner, 1, 1)
        await store.mark_ready(owner, min_fence=before.token)
        assert (await store.select(owner, 1, 1)).token > before.token
        await client.aclose()
    finally:
        server.stop()


async def test_store_reads_bytes_replies(redis_url: str, owner: int) -> None:
    client = aioredis.Redis.from_url(redis_url)  # decode_responses off
    try:
        store = SelectionStore(client, clock=lambda: T0)
        await store.mark_ready(owner)
        selection = await store.select(owner, 1, 100, assignment_id=3)
        assert await store.current(owner, 1) == selection
        assert await store.check_token(owner, 100, 1, selection.token)
        assert await store.selected_among(owner, [100]) == {100: 1}
        assert (await store.release_user(owner, 1)).token == selection.token
    finally:
        await client.aclose()
