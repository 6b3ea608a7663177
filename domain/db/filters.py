"""The customer filter (domain.filters) compiled to SQLAlchemy Core, alike on PostgreSQL and
SQLite; info values are read typed from the JSON column as the hopper reads them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true
from sqlalchemy.sql.functions import FunctionElement

from domain.db import tables as t
from domain.filters import CustomerFilter, InfoDateRange, InfoEmpty, InfoEquals, InfoRange
from domain.model import Crm, FieldType

c = t.customers.c


def filter_clause(f: CustomerFilter, crm: Crm, dialect: str) -> ColumnElement[bool]:
    """WHERE clause of the customers a checked filter selects (domain.filters.matches)."""
    conditions: list[ColumnElement[bool]] = [c.assignment_id == f.assignment_id]
    if f.customer_ids is not None:
        conditions.append(c.id.in_(f.customer_ids))
    if f.segment_ids is not None:
        conditions.append(c.segment_id.in_(f.segment_ids))
    if f.statuses is not None:
        conditions.append(c.status.in_(f.statuses))
    if f.attempts is not None:
        if f.attempts.min is not None:
            conditions.append(c.attempts >= f.attempts.min)
        if f.attempts.max is not None:
            conditions.append(c.attempts <= f.attempts.max)
    if f.has_email is not None:
        has_email = and_(c.email.isnot(None), func.trim(c.email) != "")
        conditions.append(has_email if f.has_email else not_(has_email))
    if f.has_phone is not None:
        has_phone = _has_phone(dialect)
        conditions.append(has_phone if f.has_phone else not_(has_phone))
    for cond in f.info:
        conditions.append(_info_clause(cond, crm))
    return and_(true(), *conditions)


def _has_phone(dialect: str) -> ColumnElement[bool]:
    # Customer.has_phone: at least one phone that is not blank.
    if dialect == "postgresql":
        phones: FunctionElement[Any] = func.jsonb_array_elements_text(c.phones).table_valued(
            "value"
        )
    else:
        phones = func.json_each(c.phones).table_valued("value")
    return exists(select(1).select_from(phones).where(func.trim(phones.c.value) != ""))


def _info_clause(cond: Any, crm: Crm) -> ColumnElement[bool]:
    spec = crm.info_field(cond.field)
    kind = spec.type if spec is not None else FieldType.TEXT
    raw = c.info[cond.field]
    if isinstance(cond, InfoEmpty):
        empty = or_(raw.as_string().is_(None), raw.as_string() == "")
        return empty if cond.empty else not_(empty)
    if isinstance(cond, InfoEquals):
        if kind is FieldType.NUMBER:
            return raw.as_float() == float(cond.value)
        if kind is FieldType.BOOL:
            return raw.as_boolean() == bool(cond.value)
        return raw.as_string() == str(cond.value)
    if isinstance(cond, InfoRange):
        number = raw.as_float()
        parts = [number.isnot(None)]
        if cond.min is not None:
            parts.append(number >= cond.min)
        if cond.max is not None:
            parts.append(number <= cond.max)
        return and_(*parts)
    assert isinstance(cond, InfoDateRange)
    text = raw.as_string()  # ISO dates order as text
    parts = [text.isnot(None)]
    if cond.start is not None:
        parts.append(text >= cond.start.isoformat())
    if cond.end is not None:
        parts.append(text <= cond.end.isoformat())
    return and_(*parts)
