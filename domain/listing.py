"""Rules 10, 11 and 13 as pure functions: who may be handed out in list work, and in which order.

The dialer's database query implements exactly this; tests hold the two against each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cmp_to_key
from typing import Any

from domain.errors import Invalid
from domain.flows import AVAILABLE
from domain.model import AssignmentSetup, Crm, Customer, SortKey

PLAIN_SORT_FIELDS = ("segment_priority", "attempts", "last_attempt_at", "created_at", "external_id")
INFO_PREFIX = "info."


def check_sort_keys(keys: tuple[SortKey, ...], crm: Crm) -> None:
    """An assignment can only sort on known columns and on info fields its CRM defines."""
    seen: set[str] = set()
    for key in keys:
        if key.field in seen:
            raise Invalid(f"sort key '{key.field}' is given twice")
        seen.add(key.field)
        if key.field in PLAIN_SORT_FIELDS:
            continue
        if key.field.startswith(INFO_PREFIX) and crm.info_field(key.field[len(INFO_PREFIX) :]):
            continue
        raise Invalid(f"unknown sort key '{key.field}'")


def is_listable(
    customer: Customer, setup: AssignmentSetup, shared_due_at: datetime | None, now: datetime
) -> bool:
    """May list work hand out this (unselected) customer now?

    Rule 10: only `available` customers. Rule 11: an open shared follow-up holds the customer
    back until it falls due, and once due it goes first, past max attempts and retry delay
    (somebody promised that call). Rule 13: otherwise max attempts and the retry delay apply.
    """
    if customer.status != AVAILABLE:
        return False
    if shared_due_at is not None:
        return shared_due_at <= now
    if setup.max_attempts is not None and customer.attempts >= setup.max_attempts:
        return False
    last = customer.last_attempt_at
    return last is None or last + setup.retry_delay <= now


def sort_value(customer: Customer, field: str, segment_priority: Mapping[int, int]) -> Any:
    if field == "segment_priority":
        return segment_priority.get(customer.segment_id or 0, 0)
    if field.startswith(INFO_PREFIX):
        return customer.info.get(field[len(INFO_PREFIX) :])
    return getattr(customer, field)


def list_order(
    customers: list[tuple[Customer, datetime | None]],
    setup: AssignmentSetup,
    segment_priority: Mapping[int, int],
) -> list[Customer]:
    """Sort (customer, shared_due_at) pairs into hand-out order.

    Due shared follow-ups first, earliest first (rule 11); then the setup's sort keys, where a
    missing value is the smallest (first ascending, last descending); then the customer id.
    """

    def compare(a: tuple[Customer, datetime | None], b: tuple[Customer, datetime | None]) -> int:
        (ca, due_a), (cb, due_b) = a, b
        if (due_a is None) != (due_b is None):
            return -1 if due_a is not None else 1
        if due_a is not None and due_b is not None and due_a != due_b:
            return -1 if due_a < due_b else 1
        for key in setup.sort_keys:
            va = sort_value(ca, key.field, segment_priority)
            vb = sort_value(cb, key.field, segment_priority)
            result = _compare_nullable(va, vb)
            if result:
                return -result if key.descending else result
        return (ca.id > cb.id) - (ca.id < cb.id)

    return [c for c, _ in sorted(customers, key=cmp_to_key(compare))]


def _compare_nullable(a: Any, b: Any) -> int:
    if a is None or b is None:
        return (a is not None) - (b is not None)
    return (a > b) - (a < b)
