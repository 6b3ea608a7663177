"""Attempts and follow-ups: rules 13 to 16."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.flows import AVAILABLE, Outcome
from domain.followups import (
    FollowUpPlan,
    attempt_ends_follow_ups,
    end_of_day,
    my_work,
    plan_attempt,
    plan_outcome_follow_up,
    side_panel,
)
from domain.model import AttemptKind, FollowUp, FollowUpKind

NOW = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)  # 12:00 in Oslo (CEST)
OSLO = "Europe/Oslo"
ME, OTHER = 7, 8


def outcome(follow_up: FollowUpKind | None) -> Outcome:
    return Outcome("cb", "Call back", frozenset({"interested"}), "interested", follow_up=follow_up)


# --- rules 13 and 14 -------------------------------------------------------------------------


def test_rule_13_no_answer_takes_no_time() -> None:
    assert plan_attempt(AttemptKind.NO_ANSWER, AVAILABLE, ME, None, NOW) is None
    with pytest.raises(Invalid, match="no_answer takes no follow-up time"):
        plan_attempt(AttemptKind.NO_ANSWER, AVAILABLE, ME, NOW + timedelta(hours=1), NOW)


def test_rule_13_no_answer_creates_nothing_in_any_status() -> None:
    assert plan_attempt(AttemptKind.NO_ANSWER, "interested", ME, None, NOW) is None


def test_rule_13_no_answer_keeps_the_follow_ups_of_a_customer_in_no_list() -> None:
    # Available: back into the list, which reaches it again; a follow-up it waited on is done.
    assert attempt_ends_follow_ups(AttemptKind.NO_ANSWER, AVAILABLE)
    # Any other status: the follow-up is the only way back to the customer, so it stays.
    assert not attempt_ends_follow_ups(AttemptKind.NO_ANSWER, "interested")
    # A call back later replaces whatever was planned, in every status.
    assert attempt_ends_follow_ups(AttemptKind.CALL_BACK_LATER, AVAILABLE)
    assert attempt_ends_follow_ups(AttemptKind.CALL_BACK_LATER, "interested")


def test_rule_14_call_back_later_on_available_is_shared() -> None:
    at = NOW + timedelta(hours=3)
    plan = plan_attempt(AttemptKind.CALL_BACK_LATER, AVAILABLE, ME, at, NOW)
    assert plan == FollowUpPlan(FollowUpKind.SHARED, at, None)


@pytest.mark.parametrize("status", ["interested", "sold", "refused"])
def test_rule_14_call_back_later_elsewhere_is_personal(status) -> None:
    at = NOW + timedelta(days=1)
    plan = plan_attempt(AttemptKind.CALL_BACK_LATER, status, ME, at, NOW)
    assert plan == FollowUpPlan(FollowUpKind.PERSONAL, at, ME)


def test_rule_14_call_back_later_needs_a_time() -> None:
    with pytest.raises(Invalid, match="call_back_later needs a time"):
        plan_attempt(AttemptKind.CALL_BACK_LATER, AVAILABLE, ME, None, NOW)


@pytest.mark.parametrize("at", [NOW, NOW - timedelta(seconds=1)])
def test_rule_14_call_back_later_must_lie_in_the_future(at) -> None:
    with pytest.raises(Invalid, match="must lie in the future"):
        plan_attempt(AttemptKind.CALL_BACK_LATER, AVAILABLE, ME, at, NOW)


def test_rule_14_call_back_later_needs_a_time_zone() -> None:
    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(Invalid, match="needs a time zone"):
        plan_attempt(AttemptKind.CALL_BACK_LATER, "interested", ME, naive, NOW)


# --- rule 15 ---------------------------------------------------------------------------------


def test_rule_15_outcome_follow_up_kind_chosen_by_flow() -> None:
    at = NOW + timedelta(hours=1)
    personal = plan_outcome_follow_up(outcome(FollowUpKind.PERSONAL), ME, at, NOW)
    shared = plan_outcome_follow_up(outcome(FollowUpKind.SHARED), ME, at, NOW)
    assert personal == FollowUpPlan(FollowUpKind.PERSONAL, at, ME)
    assert shared == FollowUpPlan(FollowUpKind.SHARED, at, None)


def test_rule_15_outcome_without_follow_up_takes_no_time() -> None:
    assert plan_outcome_follow_up(outcome(None), ME, None, NOW) is None
    with pytest.raises(Invalid, match="outcome 'cb' takes no follow-up time"):
        plan_outcome_follow_up(outcome(None), ME, NOW + timedelta(hours=1), NOW)


def test_rule_15_outcome_with_follow_up_needs_a_future_time() -> None:
    with pytest.raises(Invalid, match="outcome 'cb' needs a follow-up time"):
        plan_outcome_follow_up(outcome(FollowUpKind.SHARED), ME, None, NOW)
    with pytest.raises(Invalid, match="must lie in the future"):
        plan_outcome_follow_up(outcome(FollowUpKind.PERSONAL), ME, NOW - timedelta(1), NOW)


# --- rule 16 ---------------------------------------------------------------------------------


def fu(
    id_: int,
    due: datetime,
    kind: FollowUpKind = FollowUpKind.PERSONAL,
    owner: int | None = ME,
    ended: datetime | None = None,
) -> FollowUp:
    if kind is FollowUpKind.SHARED:
        owner = None
    return FollowUp(id_, 100 + id_, 1, kind, due, owner, NOW - timedelta(days=7), ended)


def ids(follow_ups) -> list[int]:
    return [f.id for f in follow_ups]


def test_end_of_day_is_local_midnight() -> None:
    assert end_of_day(NOW, OSLO) == datetime(2024, 6, 3, 22, 0, tzinfo=UTC)
    # 23:30 UTC on June 3rd is already June 4th in Oslo
    late = datetime(2024, 6, 3, 23, 30, tzinfo=UTC)
    assert end_of_day(late, OSLO) == datetime(2024, 6, 4, 22, 0, tzinfo=UTC)
    assert end_of_day(NOW, "UTC") == datetime(2024, 6, 4, 0, 0, tzinfo=UTC)


def test_end_of_day_on_a_dst_change() -> None:
    # Oslo's winter time ends on 2024-03-31: that day has 23 hours
    noon = datetime(2024, 3, 31, 10, 0, tzinfo=UTC)
    assert end_of_day(noon, OSLO) == datetime(2024, 3, 31, 22, 0, tzinfo=UTC)
    winter = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    assert end_of_day(winter, OSLO) == datetime(2024, 1, 15, 23, 0, tzinfo=UTC)


def test_rule_16_my_work_splits_today_and_overdue() -> None:
    h = timedelta(hours=1)
    follow_ups = [
        fu(1, NOW + 2 * h),  # mine, later today
        fu(2, NOW + h, FollowUpKind.SHARED),  # shared, today
        fu(3, NOW - h),  # mine, overdue
        fu(4, NOW - 30 * h, FollowUpKind.SHARED),  # shared, overdue since yesterday
        fu(5, NOW + 30 * h),  # mine, tomorrow: not today
        fu(6, NOW + 2 * h, owner=OTHER),  # someone else's personal: never shown
        fu(7, NOW - h, owner=OTHER),  # someone else's overdue personal: never shown
        fu(8, NOW - h, ended=NOW - 2 * h),  # followed up already
        fu(9, NOW + 11 * h + timedelta(minutes=59)),  # 23:59 Oslo: still today
        fu(10, NOW + 12 * h),  # 00:00 Oslo: tomorrow
        fu(11, NOW),  # due this very moment: today, not overdue
        fu(12, NOW + h, FollowUpKind.SHARED, ended=NOW),
    ]
    work = my_work(follow_ups, ME, NOW, OSLO)
    assert ids(work.today_mine) == [11, 1, 9]
    assert ids(work.today_shared) == [2]
    assert ids(work.overdue_mine) == [3]
    assert ids(work.overdue_shared) == [4]


def test_rule_16_my_work_for_another_user_shows_their_own() -> None:
    follow_ups = [fu(1, NOW + timedelta(hours=1)), fu(2, NOW + timedelta(hours=1), owner=OTHER)]
    assert ids(my_work(follow_ups, OTHER, NOW, OSLO).today_mine) == [2]


def test_rule_16_my_work_sorts_by_due_then_id() -> None:
    due = NOW - timedelta(hours=1)
    follow_ups = [fu(3, due), fu(1, due), fu(2, due - timedelta(minutes=5))]
    assert ids(my_work(follow_ups, ME, NOW, OSLO).overdue_mine) == [2, 1, 3]


def test_rule_16_side_panel() -> None:
    h = timedelta(hours=1)
    follow_ups = [
        fu(1, NOW + 48 * h),  # mine upcoming (not only today)
        fu(2, NOW + h),  # mine upcoming
        fu(3, NOW - h),  # mine overdue
        fu(4, NOW - 2 * h, FollowUpKind.SHARED),  # shared overdue
        fu(5, NOW + h, FollowUpKind.SHARED),  # shared upcoming: not in the panel
        fu(6, NOW + h, owner=OTHER),  # not mine
        fu(7, NOW - h, owner=OTHER),  # not mine
        fu(8, NOW - h, ended=NOW - h),  # done
    ]
    panel = side_panel(follow_ups, ME, NOW)
    assert ids(panel.upcoming_mine) == [2, 1]
    assert ids(panel.overdue_mine) == [3]
    assert ids(panel.overdue_shared) == [4]


def test_follow_up_overdue_and_open() -> None:
    f = fu(1, NOW - timedelta(minutes=1))
    assert f.open and f.overdue(NOW)
    assert not fu(1, NOW).overdue(NOW)
    assert not fu(1, NOW - timedelta(1), ended=NOW).overdue(NOW)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-72, max_value=72),
            st.sampled_from(list(FollowUpKind)),
            st.sampled_from([ME, OTHER]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_rule_16_property_my_work_partitions_visible_open_follow_ups(spec) -> None:
    follow_ups = [
        fu(i, NOW + timedelta(hours=h), kind, owner, NOW if ended else None)
        for i, (h, kind, owner, ended) in enumerate(spec)
    ]
    work = my_work(follow_ups, ME, NOW, OSLO)
    day_end = end_of_day(NOW, OSLO)
    lists = [work.today_mine, work.today_shared, work.overdue_mine, work.overdue_shared]
    shown = [f for lst in lists for f in lst]
    assert len(shown) == len({f.id for f in shown})  # no follow-up twice
    expected = {
        f.id
        for f in follow_ups
        if f.open
        and (f.kind is FollowUpKind.SHARED or f.owner_user_id == ME)
        and f.due_at < day_end
    }
    assert {f.id for f in shown} == expected
    assert all(f.kind is FollowUpKind.PERSONAL for f in work.today_mine + work.overdue_mine)
    assert all(f.kind is FollowUpKind.SHARED for f in work.today_shared + work.overdue_shared)
    assert all(f.overdue(NOW) for f in work.overdue_mine + work.overdue_shared)
    assert not any(f.overdue(NOW) for f in work.today_mine + work.today_shared)
    for lst in lists:
        assert [f.due_at for f in lst] == sorted(f.due_at for f in lst)
