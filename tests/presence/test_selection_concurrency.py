"""Rule 4 and rule 12 under concurrency: hundreds of tasks, several OS processes, and a
stateful model check. Every loop is bounded in count and time; seeds are printed."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from presence.keys import HopperKey, owner_prefix
from presence.selections import (
    AlreadySelected,
    NotHolder,
    SelectionLost,
    SelectionStore,
    UserHasSelection,
)

REPO = Path(__file__).resolve().parents[2]
HOPPER = HopperKey.of(assignment_id=1)
EXPECTED = (AlreadySelected, UserHasSelection, SelectionLost, NotHolder)


async def test_rule_04_holds_under_hundreds_of_concurrent_tasks(
    store_redis: Any, owner: int, locks_of: Any
) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    store = SelectionStore(store_redis)
    await store.mark_ready(owner)
    customers = list(range(1, 61))
    users = list(range(1, 81))
    new_tokens: list[int] = []
    deadline = time.monotonic() + 15

    async def step(task_rng: random.Random) -> None:
        user_id = task_rng.choice(users)
        op = task_rng.random()
        try:
            if op < 0.3:
                selection = await store.select(owner, user_id, task_rng.choice(customers))
                if not selection.resumed:
                    new_tokens.append(selection.token)
            elif op < 0.55:
                claim = await store.claim_next(owner, user_id, HOPPER)
                if claim.selection is not None:
                    new_tokens.append(claim.selection.token)
                if claim.needs_refill(10):
                    order = customers[:]
                    task_rng.shuffle(order)
                    await store.refill(owner, HOPPER, order)
            elif op < 0.75:
                mine = await store.current(owner, user_id)
                if mine is not None:
                    await store.release(owner, mine.customer_id, user_id, token=mine.token)
            elif op < 0.85:
                await store.release(owner, task_rng.choice(customers), 9999, supervisor=True)
            elif op < 0.9:
                await store.release_user(owner, user_id)
            else:
                await store.release(owner, task_rng.choice(customers), user_id)
        except EXPECTED:
            pass

    async def agent(task_seed: int) -> int:
        task_rng = random.Random(task_seed)
        steps = 0
        for _ in range(8):
            if time.monotonic() > deadline:
                break
            await step(task_rng)
            (await locks_of(store.redis, owner)).assert_rule_4()
            steps += 1
        return steps

    done = await asyncio.gather(*(agent(rng.randrange(2**32)) for _ in range(300)))
    print(f"steps={sum(done)} selections={len(new_tokens)}")
    assert sum(done) > 300 and len(new_tokens) > 50
    locks = await locks_of(store.redis, owner)
    locks.assert_rule_4()
    assert len(new_tokens) == len(set(new_tokens)), "a fencing token was handed out twice"
    assert await store.fence(owner) == max(new_tokens) == len(new_tokens)


def test_rule_12_claim_unique_across_processes(redis_url: str, owner: int, locks_of: Any) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed} owner={owner}")

    async def prepare() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await SelectionStore(client).mark_ready(owner)
        await client.aclose()

    asyncio.run(prepare())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = Path(__file__).with_name("selection_worker.py")
    processes = [
        subprocess.Popen(
            [sys.executable, str(worker), redis_url, str(owner), str(index), str(seed), "10"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(3)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=40)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    claims = [tuple(c) for r in results for c in r["claims"]]
    claimed = [customer_id for customer_id, _user, _token in claims]
    assert len(claimed) == len(set(claimed)), "a customer was handed to two agents"
    assert 50 - 6 <= len(claimed) <= 50  # manual agents may have held a few at the end
    tokens = [t for r in results for t in r["tokens"]]
    print(f"claims={len(claims)} selections={len(tokens)}")
    assert len(tokens) == len(set(tokens))

    async def verify() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            locks = await locks_of(client, owner)
            locks.assert_rule_4()
            # every claim is still held, by the agent it was handed to, with its token
            for customer_id, user_id, token in claims:
                assert locks.customers[customer_id] == (user_id, token)
            assert len(locks.customers) == len(claims)
        finally:
            await client.aclose()

    asyncio.run(verify())


class SelectionModel(RuleBasedStateMachine):
    """The store against a dict model: every answer and the whole Redis state must agree."""

    url = ""
    locks_of: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.owner = random.SystemRandom().randrange(100_000_000, 1_000_000_000)
        self.client = self.run(self._connect())
        self.store = SelectionStore(self.client, clock=lambda: 1)
        self.run(self.store.mark_ready(self.owner))
        self.held: dict[int, tuple[int, int]] = {}  # customer -> (user, token)
        self.queued: list[int] = []
        self.fence = 0

    async def _connect(self) -> Any:
        return aioredis.Redis.from_url(self.url, decode_responses=True)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def holding(self, user: int) -> int | None:
        return next((c for c, (u, _t) in self.held.items() if u == user), None)

    @rule(user=st.integers(1, 4), customer=st.integers(1, 4))
    def select(self, user: int, customer: int) -> None:
        mine = self.holding(user)
        try:
            selection = self.run(self.store.select(self.owner, user, customer))
        except AlreadySelected as exc:
            assert self.held[customer][0] == exc.held_by != user
            return
        except UserHasSelection as exc:
            assert customer not in self.held and exc.customer_id == mine
            return
        if customer in self.held:
            assert selection.resumed and self.held[customer] == (user, selection.token)
            return
        assert mine is None and selection.token == self.fence + 1
        self.fence = selection.token
        self.held[customer] = (user, selection.token)

    @rule(customers=st.lists(st.integers(1, 4), max_size=4))
    def refill(self, customers: list[int]) -> None:
        self.run(self.store.refill(self.owner, HOPPER, customers))
        for customer in customers:
            if customer not in self.held and customer not in self.queued:
                self.queued.append(customer)

    @rule(user=st.integers(1, 4))
    def claim(self, user: int) -> None:
        mine = self.holding(user)
        try:
            claim = self.run(self.store.claim_next(self.owner, user, HOPPER))
        except UserHasSelection as exc:
            assert exc.customer_id == mine
            return
        assert mine is None
        while self.queued and self.queued[0] in self.held:
            self.queued.pop(0)
        if not self.queued:
            assert claim.selection is None
            return
        expected = self.queued.pop(0)
        assert claim.selection is not None and claim.selection.customer_id == expected
        self.fence += 1
        assert claim.selection.token == self.fence
        self.held[expected] = (user, self.fence)
        assert claim.remaining == len(self.queued)

    @rule(customer=st.integers(1, 4), by=st.integers(1, 4), supervisor=st.booleans())
    def release(self, customer: int, by: int, supervisor: bool) -> None:
        try:
            released = self.run(self.store.release(self.owner, customer, by, supervisor=supervisor))
        except NotHolder:
            assert not supervisor and self.held[customer][0] != by
            return
        if customer not in self.held:
            assert released is None
            return
        assert released is not None and (released.user_id, released.token) == self.held[customer]
        del self.held[customer]

    @rule(user=st.integers(1, 4))
    def stop(self, user: int) -> None:
        released = self.run(self.store.release_user(self.owner, user))
        mine = self.holding(user)
        assert (released and released.customer_id) == mine
        if mine is not None:
            del self.held[mine]

    @invariant()
    def redis_agrees_with_model(self) -> None:
        locks = self.run(type(self).locks_of(self.client, self.owner))
        locks.assert_rule_4()
        assert locks.customers == self.held

    async def _forget(self) -> None:
        pattern = f"{owner_prefix(self.owner)}*"
        keys = [key async for key in self.client.scan_iter(match=pattern, count=1000)]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()

    def teardown(self) -> None:
        self.run(self._forget())
        self.loop.close()


def test_selection_store_matches_model(redis_url: str, locks_of: Any) -> None:
    SelectionModel.url = redis_url
    SelectionModel.locks_of = staticmethod(locks_of)
    test = SelectionModel.TestCase
    test.settings = settings(
        max_examples=60,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    test().runTest()
