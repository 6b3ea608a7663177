"""Rules 10-12: the hopper hands out the next right customer, never to two agents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from domain.model import WorkMode
from presence.keys import HopperKey, ready_key
from presence.selections import (
    Holder,
    SelectionLost,
    SelectionStore,
    StoreNotReady,
    UserHasSelection,
)

T0 = 1_700_000_000_000
HOPPER = HopperKey.of(assignment_id=11, segment_ids=[21, 22])


@pytest.fixture
async def store(store_redis: Any, owner: int) -> SelectionStore:
    store = SelectionStore(store_redis, clock=lambda: T0)
    await store.mark_ready(owner)
    return store


async def test_rule_10_claim_hands_out_in_refill_order(store: SelectionStore, owner: int) -> None:
    refilled = await store.refill(owner, HOPPER, [(30, 21), (10, 22), 20])
    assert (refilled.added, refilled.length) == (3, 3)
    assert await store.hopper_ids(owner, HOPPER) == [30, 10, 20]
    claim = await store.claim_next(owner, 1, HOPPER, now=T0 + 3)
    selection = claim.selection
    assert selection is not None
    assert (selection.customer_id, selection.assignment_id, selection.segment_id) == (30, 11, 21)
    assert (selection.mode, selection.since, claim.remaining) == (WorkMode.LIST, T0 + 3, 2)
    assert await store.current(owner, 1) == selection
    second = (await store.claim_next(owner, 2, HOPPER)).selection
    assert second is not None and (second.customer_id, second.segment_id) == (10, 22)
    third = (await store.claim_next(owner, 3, HOPPER)).selection
    assert third is not None and (third.customer_id, third.segment_id) == (20, None)


async def test_rule_10_refill_appends_after_waiting_candidates(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [5, 6])
    refilled = await store.refill(owner, HOPPER, [7, 5, 4, 6])
    assert (refilled.added, refilled.length) == (2, 4)
    assert await store.hopper_ids(owner, HOPPER) == [5, 6, 7, 4]


async def test_rule_10_a_refill_of_thousands_keeps_order_and_names_each_once(
    store: SelectionStore, owner: int
) -> None:
    """More candidates than one script call and one variadic chunk take (1,000 each): the order
    holds across calls, the waiting keep their place, held ones stay out, an id named twice
    is added once, and each keeps its segment."""
    await store.refill(owner, HOPPER, [(1500, 21), 10])
    await store.select(owner, 50, 2000)
    candidates = [(i, 21 if i % 2 else 22) for i in range(2501, 0, -1)]
    candidates.insert(100, (2400, 22))  # named early, and again in its own place
    refilled = await store.refill(owner, HOPPER, candidates)
    fresh = dict.fromkeys(i for i, _ in candidates if i not in (1500, 10, 2000))
    expected = [1500, 10, *fresh]
    assert expected[102:104] == [2400, 2401]  # where it was named first
    assert (refilled.added, refilled.length) == (2498, 2500)
    assert await store.hopper_ids(owner, HOPPER) == expected
    segment_of = {1500: 21, 10: None}  # as the refill that queued them said
    for user, customer in enumerate(expected[:4], start=1):
        claimed = (await store.claim_next(owner, user, HOPPER)).selection
        assert claimed is not None and claimed.customer_id == customer
        assert claimed.segment_id == segment_of.get(customer, 21 if customer % 2 else 22)


async def test_rule_11_due_follow_ups_go_before_waiting_candidates(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [5, 6, 7])
    await store.select(owner, 50, 8)  # held: never queued, also not in front
    refilled = await store.refill(owner, HOPPER, [9, 6, 8, 3], front=True)
    assert (refilled.added, refilled.length) == (2, 5)  # 6 was waiting: moved up, not added
    assert await store.hopper_ids(owner, HOPPER) == [9, 6, 3, 5, 7]
    claim = await store.claim_next(owner, 1, HOPPER)
    assert claim.selection is not None and claim.selection.customer_id == 9


async def test_rule_12_claim_skips_and_drops_held_customers(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [1, 2, 3])
    await store.select(owner, 50, 1)
    await store.select(owner, 51, 2)
    claim = await store.claim_next(owner, 9, HOPPER)
    assert claim.selection is not None and claim.selection.customer_id == 3
    assert (claim.skipped, claim.remaining) == (2, 0)
    assert await store.hopper_ids(owner, HOPPER) == []


async def test_rule_12_refill_skips_held_customers(store: SelectionStore, owner: int) -> None:
    await store.select(owner, 50, 1)
    refilled = await store.refill(owner, HOPPER, [1, 2])
    assert (refilled.added, refilled.length) == (1, 1)
    assert await store.hopper_ids(owner, HOPPER) == [2]


async def test_rule_12_released_customer_goes_back_into_play(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [1])
    claim = await store.claim_next(owner, 9, HOPPER)
    assert claim.selection is not None
    assert (await store.refill(owner, HOPPER, [1])).added == 0  # held: stays out
    await store.release(owner, 1, 9, token=claim.selection.token)
    assert (await store.refill(owner, HOPPER, [1])).added == 1
    again = await store.claim_next(owner, 10, HOPPER)
    assert again.selection is not None and again.selection.customer_id == 1
    assert again.selection.token > claim.selection.token


async def test_empty_hopper_answers_none_and_its_length(store: SelectionStore, owner: int) -> None:
    claim = await store.claim_next(owner, 1, HOPPER)
    assert claim.selection is None and claim.remaining == 0 and claim.needs_refill(0)
    await store.refill(owner, HOPPER, range(1, 11))
    claim = await store.claim_next(owner, 1, HOPPER)
    assert claim.remaining == 9 and not claim.needs_refill(5)


async def test_claim_scan_limit_bounds_one_call(store: SelectionStore, owner: int) -> None:
    await store.refill(owner, HOPPER, [1, 2, 3, 4])
    for user_id, customer_id in [(50, 1), (51, 2), (52, 3)]:
        await store.select(owner, user_id, customer_id)
    claim = await store.claim_next(owner, 9, HOPPER, scan_limit=2)
    assert (claim.selection, claim.remaining, claim.skipped) == (None, 2, 2)
    claim = await store.claim_next(owner, 9, HOPPER, scan_limit=2)
    assert claim.selection is not None and claim.selection.customer_id == 4


async def test_rule_04_claim_refuses_user_with_selection(store: SelectionStore, owner: int) -> None:
    await store.refill(owner, HOPPER, [1, 2])
    await store.select(owner, 9, 77)
    with pytest.raises(UserHasSelection) as refused:
        await store.claim_next(owner, 9, HOPPER)
    assert refused.value.customer_id == 77
    assert await store.hopper_length(owner, HOPPER) == 2  # nothing popped


async def test_rule_12_claim_never_hands_out_twice(
    store: SelectionStore, owner: int, locks_of
) -> None:
    customers = list(range(1, 41))
    users = list(range(1000, 1100))  # more agents than customers

    async def agent(user_id: int) -> int | None:
        for _ in range(20):
            claim = await store.claim_next(owner, user_id, HOPPER)
            if claim.selection is not None:
                return claim.selection.customer_id
            if (await store.refill(owner, HOPPER, customers)).length == 0:
                return None
        return None

    claimed = [c for c in await asyncio.gather(*(agent(u) for u in users)) if c is not None]
    assert sorted(claimed) == customers
    locks = await locks_of(store.redis, owner)
    locks.assert_rule_4()
    assert len(locks.customers) == len(customers)


async def test_rule_12_concurrent_refills_never_queue_a_customer_twice(
    store: SelectionStore, owner: int
) -> None:
    lists = [list(range(start, start + 200)) for start in range(0, 1000, 50)]
    results = await asyncio.gather(*(store.refill(owner, HOPPER, ids) for ids in lists))
    queued = await store.hopper_ids(owner, HOPPER)
    assert len(queued) == len(set(queued)) == 1150
    assert sum(r.added for r in results) == 1150


async def test_hopper_clear_forgets_candidates(store: SelectionStore, owner: int) -> None:
    await store.refill(owner, HOPPER, [(1, 21)])
    await store.hopper_clear(owner, HOPPER)
    assert await store.hopper_length(owner, HOPPER) == 0
    await store.refill(owner, HOPPER, [1])
    claim = await store.claim_next(owner, 1, HOPPER)
    assert claim.selection is not None and claim.selection.segment_id is None


async def test_rule_07_move_on_releases_and_claims_in_one_step(
    store: SelectionStore, owner: int, locks_of
) -> None:
    await store.refill(owner, HOPPER, [(30, 21), 31])
    first = (await store.claim_next(owner, 1, HOPPER)).selection
    assert first is not None
    released, claim = await store.move_on(owner, first, HOPPER, now=T0 + 9)
    assert released is not None and claim is not None and claim.selection is not None
    assert (released.customer_id, released.token, released.by_user_id) == (30, first.token, 1)
    assert (claim.selection.customer_id, claim.selection.since, claim.remaining) == (31, T0 + 9, 0)
    assert claim.selection.token > first.token
    assert await store.holder(owner, 30) is None
    assert await store.current(owner, 1) == claim.selection
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_rule_08_move_on_with_a_stale_token_changes_nothing(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [30, 31])
    first = (await store.claim_next(owner, 1, HOPPER)).selection
    assert first is not None
    await store.release(owner, 30, 50, supervisor=True)
    again = await store.select(owner, 1, 30)  # selected anew: a newer token
    with pytest.raises(SelectionLost):
        await store.move_on(owner, first, HOPPER)
    assert await store.current(owner, 1) == again
    assert await store.hopper_ids(owner, HOPPER) == [31]  # nothing claimed


async def test_move_on_with_an_empty_hopper_only_releases(
    store: SelectionStore, owner: int
) -> None:
    held = await store.select(owner, 1, 30, assignment_id=11)
    released, claim = await store.move_on(owner, held, HOPPER)
    assert released is not None and claim is not None
    assert (claim.selection, claim.remaining) == (None, 0)
    assert await store.current(owner, 1) is None


async def test_settle_lets_go_of_a_lock_put_back_and_confirms_the_new_one(
    store: SelectionStore, owner: int
) -> None:
    held = await store.select(owner, 1, 30, assignment_id=11)
    released = await store.release(owner, 30, 1, token=held.token)
    assert released is not None
    # A rebuild that read the database before the release committed puts the lock back.
    await store.redis.delete(ready_key(owner))
    await store.rebuild(owner, [Holder(30, 1, held.token, held.since, 11)], 0)
    other = await store.select(owner, 2, 40)
    assert await store.settle(released, other) is True
    assert await store.holder(owner, 30) is None
    assert await store.settle(released, held) is False  # not held (any more)
    newer = await store.select(owner, 3, 30)  # a newer selection is never touched
    assert await store.settle(released, None) is False
    assert await store.holder(owner, 30) == newer
    await store.redis.delete(ready_key(owner))
    assert await store.settle(released, other) is None  # not loaded: nothing known


async def test_rule_07_many_move_on_in_one_step_each_as_alone(
    store: SelectionStore, owner: int, locks_of
) -> None:
    """move_on_many: each agent in turn as move_on does; a stale one and one whose selection
    ended answer SelectionLost and change nothing, the others each claim the next."""
    await store.refill(owner, HOPPER, [30, 31, 32, 33, 34, 35])
    held = [(await store.claim_next(owner, u, HOPPER)).selection for u in (1, 2, 3)]
    assert all(h is not None for h in held)
    first, second, third = held
    await store.release(owner, second.customer_id, 50, supervisor=True)
    again = await store.select(owner, 2, second.customer_id)  # a newer token: `second` is stale
    await store.release(owner, third.customer_id, 3)  # nobody holds `third` now
    answers = await store.move_on_many(
        owner, [(first, HOPPER), (second, HOPPER), (third, HOPPER)], now=T0 + 9
    )
    released, claim = answers[0]
    assert released is not None and released.customer_id == first.customer_id
    assert claim is not None and claim.selection is not None
    assert (claim.selection.customer_id, claim.selection.since) == (33, T0 + 9)
    assert isinstance(answers[1], SelectionLost)
    assert isinstance(answers[2], SelectionLost)
    assert await store.current(owner, 1) == claim.selection
    assert await store.current(owner, 2) == again
    assert await store.current(owner, 3) is None
    assert await store.hopper_ids(owner, HOPPER) == [34, 35]
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_many_move_on_claims_each_from_its_own_hopper(
    store: SelectionStore, owner: int, locks_of
) -> None:
    """The agents of one batch work different lists: each claims from its own hopper, with its
    own assignment, and its own token."""
    other = HopperKey.of(assignment_id=12, segment_ids=None)
    await store.refill(owner, HOPPER, [30, 31])
    await store.refill(owner, other, [60, 61])
    first = (await store.claim_next(owner, 1, HOPPER)).selection
    second = (await store.claim_next(owner, 2, other)).selection
    assert first is not None and second is not None
    answers = await store.move_on_many(owner, [(first, HOPPER), (second, other)], now=T0 + 5)
    (released_1, claim_1), (released_2, claim_2) = answers
    assert (released_1.customer_id, released_1.token) == (30, first.token)
    assert (released_2.customer_id, released_2.token) == (60, second.token)
    assert claim_1.selection is not None and claim_2.selection is not None
    assert (claim_1.selection.customer_id, claim_1.selection.assignment_id) == (31, 11)
    assert (claim_2.selection.customer_id, claim_2.selection.assignment_id) == (61, 12)
    assert claim_1.selection.token != claim_2.selection.token
    assert await store.hopper_ids(owner, HOPPER) == []
    assert await store.hopper_ids(owner, other) == []
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_many_move_on_refuses_all_while_the_locks_are_not_loaded(
    store: SelectionStore, owner: int
) -> None:
    await store.refill(owner, HOPPER, [30, 31, 32])
    held = [(await store.claim_next(owner, u, HOPPER)).selection for u in (1, 2)]
    await store.redis.delete(ready_key(owner))
    with pytest.raises(StoreNotReady):
        await store.move_on_many(owner, [(h, HOPPER) for h in held if h is not None])
    assert await store.hopper_ids(owner, HOPPER) == [32]  # nothing changed


async def test_settle_many_answers_each_as_settle(store: SelectionStore, owner: int) -> None:
    a = await store.select(owner, 1, 30, assignment_id=11)
    b = await store.select(owner, 2, 31, assignment_id=11)
    released_a = await store.release(owner, 30, 1, token=a.token)
    released_b = await store.release(owner, 31, 2, token=b.token)
    assert released_a is not None and released_b is not None
    await store.redis.delete(ready_key(owner))
    await store.rebuild(owner, [Holder(30, 1, a.token, a.since, 11)], 0)  # `a` put back
    newer = await store.select(owner, 3, 40)
    assert await store.settle_many(owner, [(released_a, newer), (released_b, b)]) == [
        True,
        False,
    ]
    assert await store.holder(owner, 30) is None
    await store.redis.delete(ready_key(owner))
    assert await store.settle_many(owner, [(released_a, newer)]) == [None]


async def test_rule_04_hand_over_passes_a_lines_selection_to_an_agent_in_one_step(
    store: SelectionStore, owner: int, locks_of
) -> None:
    await store.refill(owner, HOPPER, [(30, 21)])
    line = (await store.claim_next(owner, -1, HOPPER)).selection  # a dialer line's claim
    assert line is not None
    released, agent = await store.hand_over(owner, line, 7, now=T0 + 4)
    assert released is not None and agent is not None
    assert (released.user_id, released.token, released.by_user_id) == (-1, line.token, -1)
    assert (agent.user_id, agent.customer_id, agent.since) == (7, 30, T0 + 4)
    assert (agent.assignment_id, agent.segment_id, agent.mode) == (11, 21, WorkMode.LIST)
    assert agent.token > line.token
    assert await store.current(owner, -1) is None
    assert await store.holder(owner, 30) == agent
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_hand_over_to_an_agent_holding_a_customer_changes_nothing(
    store: SelectionStore, owner: int
) -> None:
    line = await store.select(owner, -1, 30, assignment_id=11, mode=WorkMode.LIST)
    busy = await store.select(owner, 7, 40)
    with pytest.raises(UserHasSelection):
        await store.hand_over(owner, line, 7)
    assert await store.holder(owner, 30) == line
    assert await store.current(owner, 7) == busy
    stale = await store.select(owner, 8, 50)  # nobody holds 50 with the line's token
    await store.release(owner, 50, 8)
    with pytest.raises(SelectionLost):
        await store.hand_over(owner, stale, 9)
    assert await store.current(owner, 9) is None
