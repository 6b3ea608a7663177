"""Rules 4-9 on the selection store, on a single Redis and on a Redis Cluster."""

from __future__ import annotations

from typing import Any

import pytest

from domain.model import WorkMode
from presence.keys import customer_key, live_key, user_key
from presence.selections import (
    AlreadySelected,
    NotHolder,
    Released,
    SelectionLost,
    SelectionStore,
    UserHasSelection,
)

T0 = 1_700_000_000_000


@pytest.fixture
async def store(store_redis: Any, owner: int) -> SelectionStore:
    store = SelectionStore(store_redis, clock=lambda: T0)
    await store.mark_ready(owner)
    return store


async def test_rule_04_user_holds_one_customer(store: SelectionStore, owner: int, locks_of) -> None:
    first = await store.select(owner, 1, 100, assignment_id=5, segment_id=6)
    with pytest.raises(UserHasSelection) as refused:
        await store.select(owner, 1, 101)
    assert refused.value.customer_id == 100
    assert refused.value.to_dict()["code"] == "user_has_selection"
    assert await store.holder(owner, 101) is None
    assert await store.current(owner, 1) == first
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_rule_04_customer_held_by_one_user(
    store: SelectionStore, owner: int, locks_of
) -> None:
    await store.select(owner, 1, 100, now=T0 + 5)
    with pytest.raises(AlreadySelected) as refused:
        await store.select(owner, 2, 100)
    assert (refused.value.held_by, refused.value.since) == (1, T0 + 5)
    body = refused.value.to_dict()
    assert body["code"] == "already_selected"
    assert body["held_by"] == "1" and body["since"].startswith("2023-11-14T22:13:20")
    assert await store.current(owner, 2) is None
    (await locks_of(store.redis, owner)).assert_rule_4()


async def test_rule_04_select_writes_lock_user_and_live_row(
    store: SelectionStore, owner: int
) -> None:
    selection = await store.select(
        owner, 7, 70, assignment_id=3, segment_id=None, mode=WorkMode.MANUAL, now=T0 + 1
    )
    assert selection.token > 0 and selection.since == T0 + 1 and not selection.resumed
    assert await store.redis.hgetall(customer_key(owner, 70)) == {
        "user": "7",
        "token": str(selection.token),
        "since": str(T0 + 1),
        "assignment": "3",
        "segment": "",
        "mode": "manual",
    }
    assert await store.redis.get(user_key(owner, 7)) == "70"
    assert await store.snapshot(owner) == [selection]
    assert selection.row()["segment_id"] is None
    assert await store.redis.hget(live_key(owner), "70") is not None


async def test_rule_06_holder_says_who_and_since(store: SelectionStore, owner: int) -> None:
    assert await store.holder(owner, 100) is None
    selection = await store.select(owner, 4, 100, assignment_id=1, segment_id=2, now=T0 + 9)
    held = await store.holder(owner, 100)
    assert held == selection and (held.user_id, held.since) == (4, T0 + 9)


async def test_rule_07_holder_releases_own_selection(store: SelectionStore, owner: int) -> None:
    selection = await store.select(owner, 1, 100)
    released = await store.release(owner, 100, 1, token=selection.token)
    assert released == Released(owner, 100, 1, selection.token, T0, by_user_id=1)
    assert not released.by_someone_else
    assert await store.current(owner, 1) is None and await store.holder(owner, 100) is None
    assert await store.release(owner, 100, 1) is None  # releasing twice is harmless
    again = await store.select(owner, 2, 100)
    assert again.token > selection.token


async def test_rule_07_only_holder_releases_without_right(
    store: SelectionStore, owner: int
) -> None:
    await store.select(owner, 1, 100)
    with pytest.raises(NotHolder) as refused:
        await store.release(owner, 100, 2)
    assert refused.value.held_by == 1 and refused.value.code == "forbidden"
    assert (await store.holder(owner, 100)).user_id == 1


async def test_rule_07_supervisor_release_records_who(
    store: SelectionStore, owner: int, locks_of
) -> None:
    selection = await store.select(owner, 1, 100, assignment_id=8, segment_id=9)
    released = await store.release(owner, 100, 99, supervisor=True)
    assert released is not None
    assert (released.user_id, released.by_user_id, released.token) == (1, 99, selection.token)
    assert (released.assignment_id, released.segment_id) == (8, 9)
    assert released.by_someone_else
    assert await store.current(owner, 1) is None
    assert await store.snapshot(owner) == []
    (await locks_of(store.redis, owner)).assert_rule_4()
    # The thrown-out user may select again at once: its user key went with the customer key.
    assert (await store.select(owner, 1, 101)).customer_id == 101


async def test_rule_07_work_stop_releases_whatever_the_user_holds(
    store: SelectionStore, owner: int
) -> None:
    assert await store.release_user(owner, 1) is None
    selection = await store.select(owner, 1, 100)
    released = await store.release_user(owner, 1)
    assert released is not None
    assert (released.customer_id, released.token, released.by_user_id) == (100, selection.token, 1)
    assert await store.holder(owner, 100) is None
    assert await store.release_user(owner, 1) is None


async def test_rule_08_stale_token_is_refused(store: SelectionStore, owner: int) -> None:
    first = await store.select(owner, 1, 100)
    await store.release(owner, 100, 50, supervisor=True)
    assert not await store.check_token(owner, 100, 1, first.token)
    second = await store.select(owner, 1, 100)  # the same user selects it anew
    assert second.token != first.token
    assert await store.check_token(owner, 100, 1, second.token)
    assert not await store.check_token(owner, 100, 1, first.token)
    assert not await store.check_token(owner, 100, 2, second.token)
    with pytest.raises(SelectionLost) as lost:
        await store.release(owner, 100, 1, token=first.token)
    assert lost.value.code == "selection_lost"
    assert (await store.holder(owner, 100)) == second  # the stale release changed nothing
    await store.release(owner, 100, 1, token=second.token)
    with pytest.raises(SelectionLost):
        await store.release(owner, 100, 1, token=second.token)


async def test_rule_08_supervisor_release_with_stale_token_spares_newer_selection(
    store: SelectionStore, owner: int
) -> None:
    first = await store.select(owner, 1, 100)
    await store.release(owner, 100, 1)
    await store.select(owner, 2, 100)
    with pytest.raises(SelectionLost):
        await store.release(owner, 100, 99, token=first.token, supervisor=True)
    assert (await store.holder(owner, 100)).user_id == 2


async def test_rule_09_reselect_after_reconnect_returns_same_selection(
    store: SelectionStore, owner: int
) -> None:
    selection = await store.select(owner, 1, 100, assignment_id=2, segment_id=3, now=T0)
    again = await store.select(owner, 1, 100, assignment_id=2, segment_id=3, now=T0 + 60_000)
    assert again == selection and again.resumed and again.since == T0
    assert await store.current(owner, 1) == selection
    assert await store.fence(owner) == selection.token  # no new token for a reconnect


async def test_selected_among_maps_held_customers_to_holders(
    store: SelectionStore, owner: int
) -> None:
    await store.select(owner, 1, 100)
    await store.select(owner, 2, 102)
    assert await store.selected_among(owner, [100, 101, 102, 103]) == {100: 1, 102: 2}
    assert await store.selected_among(owner, []) == {}


async def test_snapshot_lists_oldest_first(store: SelectionStore, owner: int) -> None:
    late = await store.select(owner, 1, 100, now=T0 + 20)
    early = await store.select(owner, 2, 200, assignment_id=4, now=T0 + 10)
    assert await store.snapshot(owner) == [early, late]
    assert early.row() == {
        "user_id": 2,
        "customer_id": 200,
        "assignment_id": 4,
        "segment_id": None,
        "since": T0 + 10,
        "token": early.token,
        "mode": "manual",
    }


async def test_owners_are_watertight(store: SelectionStore, owner: int, other_owner: int) -> None:
    other = other_owner
    await store.mark_ready(other)
    await store.select(owner, 1, 100)
    selection = await store.select(other, 1, 100)  # same ids, another data owner
    assert selection.owner == other
    assert await store.snapshot(owner) != await store.snapshot(other)
    await store.release_user(other, 1)
    assert (await store.holder(owner, 100)).user_id == 1
