"""The customer filter (rule 19): its shape and its checks, as pure functions."""

from __future__ import annotations

import pytest

from domain.errors import Invalid
from domain.filters import CustomerFilter, InfoEquals, check_filter, matches, parse_filter
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import Assignment, Crm, CrmKind, Customer, FieldType, InfoField, Segment

FLOW = CustomerFlow(
    (Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    (Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale"),),
)
CRM = Crm(
    1,
    1,
    "Private",
    CrmKind.B2C,
    (
        InfoField("score", "Score", FieldType.NUMBER),
        InfoField("city", "City", FieldType.TEXT),
        InfoField("vip", "VIP", FieldType.BOOL),
        InfoField("renewal", "Renewal", FieldType.DATE),
    ),
)
ASSIGNMENT = Assignment(
    5, 1, 1, "A", FLOW, segments=(Segment(50, 5, "Unsegmented", is_unsegmented=True),)
)


def customer(**kw) -> Customer:
    base = dict(id=1, crm_id=1, data_owner_id=1, external_id="1", name="N", assignment_id=5)
    return Customer(**{**base, "status": AVAILABLE, "segment_id": 50, **kw})


def test_rule_19_filter_shape_errors_name_the_field() -> None:
    with pytest.raises(Invalid, match=r"filter\.attempts\.min"):
        parse_filter({"assignment_id": 5, "attempts": {"min": "many"}})
    with pytest.raises(Invalid, match=r"filter\.attempts: .*min must not be larger"):
        parse_filter({"assignment_id": 5, "attempts": {"min": 3, "max": 1}})
    with pytest.raises(Invalid, match=r"filter\.colour"):
        parse_filter({"assignment_id": 5, "colour": "red"})
    with pytest.raises(Invalid, match=r"filter\.info\.0"):
        parse_filter({"assignment_id": 5, "info": [{"field": "score", "op": "near"}]})
    with pytest.raises(Invalid, match=r"filter\.assignment_id"):
        parse_filter({})


def test_rule_19_filter_names_only_what_the_assignment_has() -> None:
    def check(data):
        return check_filter(parse_filter({"assignment_id": 5, **data}), ASSIGNMENT, CRM)

    with pytest.raises(Invalid, match="no segment 99"):
        check({"segment_ids": [99]})
    with pytest.raises(Invalid, match="no status 'won'"):
        check({"statuses": ["won"]})
    with pytest.raises(Invalid, match=r"filter\.info\.0\.age: the CRM has no info field"):
        check({"info": [{"field": "age", "op": "eq", "value": 3}]})
    with pytest.raises(Invalid, match="a range needs a number field"):
        check({"info": [{"field": "city", "op": "range", "min": 1}]})
    with pytest.raises(Invalid, match="a date range needs a date field"):
        check({"info": [{"field": "score", "op": "date_range", "start": "2026-01-01"}]})
    with pytest.raises(Invalid, match="'abc' is not a number"):
        check({"info": [{"field": "score", "op": "eq", "value": "abc"}]})
    checked = check({"info": [{"field": "score", "op": "eq", "value": "7,5"}]})
    assert checked.info == (InfoEquals(field="score", op="eq", value=7.5),)


def test_rule_19_matches_every_condition() -> None:
    f = check_filter(
        CustomerFilter.model_validate(
            {
                "assignment_id": 5,
                "statuses": [AVAILABLE],
                "attempts": {"max": 2},
                "has_email": True,
                "has_phone": True,
                "info": [
                    {"field": "score", "op": "range", "min": 10, "max": 20},
                    {"field": "renewal", "op": "date_range", "end": "2026-06-30"},
                    {"field": "vip", "op": "eq", "value": "ja"},
                    {"field": "city", "op": "empty", "empty": False},
                ],
            }
        ),
        ASSIGNMENT,
        CRM,
    )
    good = customer(
        email="a@b.no",
        phones=("+4790000000",),
        attempts=2,
        info={"score": 15, "renewal": "2026-06-30", "vip": True, "city": "Bodø"},
    )
    assert matches(f, good, CRM)
    assert not matches(f, customer(**{**_fields(good), "attempts": 3}), CRM)
    assert not matches(f, customer(**{**_fields(good), "phones": (" ",)}), CRM)
    assert not matches(f, customer(**{**_fields(good), "email": " "}), CRM)
    assert not matches(f, customer(**{**_fields(good), "info": {**good.info, "score": 21}}), CRM)
    assert not matches(f, customer(**{**_fields(good), "info": {**good.info, "city": ""}}), CRM)
    assert not matches(f, customer(**{**_fields(good), "status": "sale"}), CRM)
    assert not matches(f, customer(**{**_fields(good), "assignment_id": 6}), CRM)


def _fields(c: Customer) -> dict:
    return {k: getattr(c, k) for k in c.__slots__ if k not in ("id", "crm_id", "data_owner_id")}
