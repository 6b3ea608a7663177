"""The customer filter (utvalg) of bulk work, rules 19 and 20: which customers of an assignment.

A filter arrives as JSON and is validated twice: its shape by pydantic (``parse_filter``), then
against the assignment and its CRM (``check_filter``: known segments, statuses and info fields,
values of the field's type). Both refuse with Invalid naming the field. ``matches`` is the filter
as a pure function; domain.db.filters compiles the same filter to SQL, and tests hold the two
together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.errors import Invalid
from domain.fields import coerce_value
from domain.model import Assignment, Crm, Customer, FieldType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Model):
    """Inclusive bounds; either may be left out."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be larger than max")
        return self


class InfoEquals(_Model):
    """The info field holds exactly this value (compared in the field's type)."""

    field: str = Field(min_length=1)
    op: Literal["eq"]
    value: str | int | float | bool


class InfoRange(_Model):
    """A number info field between min and max (inclusive)."""

    field: str = Field(min_length=1)
    op: Literal["range"]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> InfoRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be larger than max")
        return self


class InfoDateRange(_Model):
    """A date info field from `start` to `end` (inclusive)."""

    field: str = Field(min_length=1)
    op: Literal["date_range"]
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> InfoDateRange:
        if self.start is None and self.end is None:
            raise ValueError("give start, end or both")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class InfoEmpty(_Model):
    """The info field has no value (`empty` true) or has one (`empty` false)."""

    field: str = Field(min_length=1)
    op: Literal["empty"]
    empty: bool = True


InfoCondition = Annotated[
    InfoEquals | InfoRange | InfoDateRange | InfoEmpty, Field(discriminator="op")
]


class CustomerFilter(_Model):
    """Customers of one assignment; every condition given must hold (AND)."""

    assignment_id: int
    customer_ids: tuple[int, ...] | None = Field(default=None, min_length=1)
    segment_ids: tuple[int, ...] | None = Field(default=None, min_length=1)
    statuses: tuple[str, ...] | None = Field(default=None, min_length=1)
    attempts: IntRange | None = None
    has_email: bool | None = None
    has_phone: bool | None = None
    info: tuple[InfoCondition, ...] = ()


def parse_filter(data: Any) -> CustomerFilter:
    """A CustomerFilter from JSON data, or Invalid naming the first bad field."""
    if isinstance(data, CustomerFilter):
        return data
    try:
        return CustomerFilter.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in ("filter", *first["loc"]))
        raise Invalid(f"{where}: {first['msg']}", field=where) from None


def check_filter(f: CustomerFilter, assignment: Assignment, crm: Crm) -> CustomerFilter:
    """Rule 19: the filter names only what the assignment and its CRM have. Returns the filter
    with equality values in their field's stored form (coerce_value)."""
    if f.assignment_id != assignment.id:
        raise Invalid("filter.assignment_id: not the assignment checked", field="assignment_id")
    for segment_id in f.segment_ids or ():
        if assignment.segment(segment_id) is None:
            raise Invalid(
                f"filter.segment_ids: no segment {segment_id} in this assignment",
                field="segment_ids",
            )
    for status in f.statuses or ():
        if assignment.flow.status(status) is None:
            raise Invalid(f"filter.statuses: the flow has no status '{status}'", field="statuses")
    conditions = []
    for i, cond in enumerate(f.info):
        where = f"filter.info.{i}.{cond.field}"
        spec = crm.info_field(cond.field)
        if spec is None:
            raise Invalid(f"{where}: the CRM has no info field '{cond.field}'", field=where)
        if isinstance(cond, InfoRange) and spec.type is not FieldType.NUMBER:
            raise Invalid(f"{where}: a range needs a number field", field=where)
        if isinstance(cond, InfoDateRange) and spec.type is not FieldType.DATE:
            raise Invalid(f"{where}: a date range needs a date field", field=where)
        if isinstance(cond, InfoEquals):
            try:
                value = coerce_value(spec.type, cond.value, label=where)
            except Invalid as error:
                raise Invalid(error.message, field=where) from None
            cond = cond.model_copy(update={"value": value})
        conditions.append(cond)
    return f.model_copy(update={"info": tuple(conditions)})


def matches(f: CustomerFilter, customer: Customer, crm: Crm) -> bool:
    """The filter as a pure predicate (what the SQL of domain.db.filters selects)."""
    if customer.assignment_id != f.assignment_id:
        return False
    if f.customer_ids is not None and customer.id not in f.customer_ids:
        return False
    if f.segment_ids is not None and customer.segment_id not in f.segment_ids:
        return False
    if f.statuses is not None and customer.status not in f.statuses:
        return False
    if f.attempts is not None:
        if f.attempts.min is not None and customer.attempts < f.attempts.min:
            return False
        if f.attempts.max is not None and customer.attempts > f.attempts.max:
            return False
    if f.has_email is not None and customer.has_email != f.has_email:
        return False
    if f.has_phone is not None and customer.has_phone != f.has_phone:
        return False
    return all(_info_matches(c, customer.info, crm) for c in f.info)


def _info_matches(cond: InfoCondition, info: Mapping[str, Any], crm: Crm) -> bool:
    value = info.get(cond.field)
    if isinstance(cond, InfoEmpty):
        return (value is None or value == "") == cond.empty
    if value is None:
        return False
    spec = crm.info_field(cond.field)
    kind = spec.type if spec is not None else FieldType.TEXT
    if isinstance(cond, InfoEquals):
        if kind is FieldType.NUMBER:
            return _number(value) == float(cond.value)
        if kind is FieldType.BOOL:
            return value is cond.value
        return str(value) == str(cond.value)
    if isinstance(cond, InfoRange):
        number = _number(value)
        if number is None:
            return False
        return (cond.min is None or number >= cond.min) and (cond.max is None or number <= cond.max)
    text = str(value)
    start = cond.start.isoformat() if cond.start else None
    end = cond.end.isoformat() if cond.end else None
    return (start is None or text >= start) and (end is None or text <= end)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
