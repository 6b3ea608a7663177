"""Rules 10, 11 and 13 in list work: who may be handed out, and in which order."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.flows import AVAILABLE
from domain.listing import check_sort_keys, is_listable, list_order, sort_value
from domain.model import (
    AssignmentSetup,
    Crm,
    CrmKind,
    Customer,
    FieldType,
    InfoField,
    SortKey,
)

NOW = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
CRM = Crm(10, 1, "Private", CrmKind.B2C, (InfoField("score", "Score", FieldType.NUMBER),))
SETUP = AssignmentSetup()  # max 6 attempts, 2 h retry delay, default sort


def customer(id_: int, **kw) -> Customer:
    base = {"assignment_id": 1, "segment_id": 1, "status": AVAILABLE}
    return Customer(id_, CRM.id, 1, f"K-{id_}", f"C{id_}", **{**base, **kw})


def ids(customers) -> list[int]:
    return [c.id for c in customers]


# --- sort keys ---------------------------------------------------------------------------------


def test_plain_and_known_info_sort_keys_are_accepted() -> None:
    check_sort_keys(
        (
            SortKey("segment_priority", True),
            SortKey("attempts"),
            SortKey("last_attempt_at"),
            SortKey("created_at"),
            SortKey("external_id"),
            SortKey("info.score", True),
        ),
        CRM,
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ((SortKey("attempts"), SortKey("attempts", True)), "sort key 'attempts' is given twice"),
        ((SortKey("name"),), "unknown sort key 'name'"),
        ((SortKey("info.colour"),), "unknown sort key 'info.colour'"),
        ((SortKey("info."),), "unknown sort key 'info.'"),
    ],
)
def test_bad_sort_keys_are_refused(keys, message) -> None:
    with pytest.raises(Invalid) as err:
        check_sort_keys(keys, CRM)
    assert err.value.message == message


# --- eligibility -------------------------------------------------------------------------------


def test_rule_10_only_available_customers_are_listable() -> None:
    assert is_listable(customer(1), SETUP, None, NOW)
    assert not is_listable(customer(1, status="interested"), SETUP, None, NOW)
    assert not is_listable(customer(1, status=None), SETUP, None, NOW)


def test_rule_11_future_shared_follow_up_holds_customer_back() -> None:
    assert not is_listable(customer(1), SETUP, NOW + timedelta(minutes=1), NOW)


def test_rule_11_due_shared_follow_up_is_listable_past_limits() -> None:
    worn = customer(1, attempts=99, last_attempt_at=NOW - timedelta(minutes=1))
    assert not is_listable(worn, SETUP, None, NOW)
    assert is_listable(worn, SETUP, NOW, NOW)
    assert is_listable(worn, SETUP, NOW - H, NOW)


def test_rule_11_shared_follow_up_never_lists_a_customer_out_of_available() -> None:
    assert not is_listable(customer(1, status="interested"), SETUP, NOW - H, NOW)


def test_rule_13_max_attempts_end_list_work_on_a_customer() -> None:
    assert is_listable(customer(1, attempts=5), SETUP, None, NOW)
    assert not is_listable(customer(1, attempts=6), SETUP, None, NOW)
    unlimited = replace(SETUP, max_attempts=None)
    assert is_listable(customer(1, attempts=1000), unlimited, None, NOW)


def test_rule_13_no_answer_comes_back_after_the_retry_delay() -> None:
    assert not is_listable(customer(1, attempts=1, last_attempt_at=NOW - H), SETUP, None, NOW)
    assert is_listable(customer(1, attempts=1, last_attempt_at=NOW - 2 * H), SETUP, None, NOW)
    no_delay = replace(SETUP, retry_delay=timedelta(0))
    assert is_listable(customer(1, attempts=1, last_attempt_at=NOW), no_delay, None, NOW)


# --- order -------------------------------------------------------------------------------------


def test_sort_value_reads_fields() -> None:
    c = customer(1, segment_id=3, attempts=2, info={"score": 9})
    assert sort_value(c, "segment_priority", {3: 7}) == 7
    assert sort_value(c, "segment_priority", {}) == 0
    assert sort_value(c, "attempts", {}) == 2
    assert sort_value(c, "info.score", {}) == 9
    assert sort_value(c, "info.missing", {}) is None
    assert sort_value(c, "external_id", {}) == "K-1"


def test_rule_10_default_order_segment_priority_attempts_last_attempt() -> None:
    pairs = [
        (customer(1, segment_id=2, attempts=0), None),  # low-priority segment
        (customer(2, attempts=2, last_attempt_at=NOW - 5 * H), None),
        (customer(3, attempts=1, last_attempt_at=NOW - 3 * H), None),
        (customer(4, attempts=1, last_attempt_at=NOW - 9 * H), None),
        (customer(5, attempts=1), None),  # never attempted: missing time comes first
        (customer(6, attempts=0), None),
    ]
    order = list_order(pairs, SETUP, {1: 10, 2: 1})
    assert ids(order) == [6, 5, 4, 3, 2, 1]


def test_rule_11_due_shared_follow_ups_first_earliest_first() -> None:
    pairs = [
        (customer(1, attempts=0), None),
        (customer(2, attempts=5), NOW - H),
        (customer(3, attempts=5), NOW - 2 * H),
        (customer(4, attempts=0, segment_id=9), None),
    ]
    assert ids(list_order(pairs, SETUP, {1: 0, 9: 5})) == [3, 2, 4, 1]


def test_rule_10_info_field_sort_descending_puts_missing_last() -> None:
    setup = replace(SETUP, sort_keys=(SortKey("info.score", descending=True),))
    pairs = [
        (customer(1, info={"score": 3}), None),
        (customer(2, info={}), None),
        (customer(3, info={"score": 8}), None),
    ]
    assert ids(list_order(pairs, setup, {})) == [3, 1, 2]
    ascending = replace(SETUP, sort_keys=(SortKey("info.score"),))
    assert ids(list_order(pairs, ascending, {})) == [2, 1, 3]


def test_rule_10_ties_break_on_customer_id() -> None:
    pairs = [(customer(i), None) for i in (5, 2, 9, 1)]
    assert ids(list_order(pairs, SETUP, {})) == [1, 2, 5, 9]
    assert ids(list_order(pairs, replace(SETUP, sort_keys=()), {})) == [1, 2, 5, 9]


# --- properties --------------------------------------------------------------------------------

SORT_FIELDS = ["segment_priority", "attempts", "last_attempt_at", "created_at", "info.score"]
maybe_time = st.one_of(st.none(), st.integers(-100, 100).map(lambda h: NOW + h * H))


@st.composite
def pairs_and_setup(draw: st.DrawFn):
    n = draw(st.integers(0, 25))
    ids_ = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    pairs = [
        (
            customer(
                i,
                segment_id=draw(st.integers(1, 3)),
                attempts=draw(st.integers(0, 3)),
                last_attempt_at=draw(maybe_time),
                created_at=draw(maybe_time),
                info=draw(st.one_of(st.just({}), st.integers(0, 3).map(lambda v: {"score": v}))),
            ),
            draw(maybe_time),
        )
        for i in ids_
    ]
    fields = draw(st.lists(st.sampled_from(SORT_FIELDS), unique=True, max_size=4))
    keys = tuple(SortKey(f, draw(st.booleans())) for f in fields)
    check_sort_keys(keys, CRM)
    priority = {1: draw(st.integers(0, 5)), 2: draw(st.integers(0, 5))}
    return pairs, replace(SETUP, sort_keys=keys), priority


@given(pairs_and_setup(), st.randoms(use_true_random=False))
def test_rule_11_property_list_order_is_total_deterministic_and_shared_first(case, rnd) -> None:
    pairs, setup, priority = case
    order = list_order(pairs, setup, priority)
    assert sorted(ids(order)) == sorted(c.id for c, _ in pairs)  # a permutation
    # deterministic: any input order gives the same hand-out order
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert list_order(shuffled, setup, priority) == order
    assert list_order(list(reversed(pairs)), setup, priority) == order
    # due shared follow-ups (earliest first) come before every other customer
    due = {c.id: d for c, d in pairs}
    flags = [due[c.id] is not None for c in order]
    assert flags == sorted(flags, reverse=True)
    shared_dues = [due[c.id] for c in order if due[c.id] is not None]
    assert shared_dues == sorted(shared_dues)
    # within the rest, consecutive customers respect the first sort key that differs
    rest = [c for c in order if due[c.id] is None]
    for a, b in itertools.pairwise(rest):
        assert _key(a, setup, priority) <= _key(b, setup, priority)


def _key(c: Customer, setup: AssignmentSetup, priority) -> tuple:
    """A reference sort key: None smallest, descending keys negated via rank inversion."""
    parts = []
    for k in setup.sort_keys:
        v = sort_value(c, k.field, priority)
        if isinstance(v, datetime):
            v = v.timestamp()
        rank = (0, 0) if v is None else (1, v)
        parts.append(_Desc(rank) if k.descending else rank)
    return (*parts, c.id)


class _Desc:
    def __init__(self, v) -> None:
        self.v = v

    def __eq__(self, other) -> bool:
        return self.v == other.v

    def __lt__(self, other) -> bool:
        return self.v > other.v

    def __le__(self, other) -> bool:
        return self.v >= other.v


def test_list_order_reference_key_sanity() -> None:
    # the property's reference key really orders descending keys the other way round
    setup = replace(SETUP, sort_keys=(SortKey("attempts", descending=True),))
    a, b = customer(1, attempts=5), customer(2, attempts=1)
    assert _key(a, setup, {}) < _key(b, setup, {})
    assert ids(list_order([(b, None), (a, None)], setup, {})) == [1, 2]
