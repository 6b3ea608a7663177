"""coerce_value: the one coercion of typed field values (info fields, outcome details)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.fields import coerce_value
from domain.model import FieldType


def test_none_stays_none_for_every_type() -> None:
    for kind in FieldType:
        assert coerce_value(kind, None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello ", "hello"),
        (12, "12"),
        (1.5, "1.5"),
        (True, "True"),
        (date(2024, 5, 17), "2024-05-17"),
        (datetime(2024, 5, 17, 8, 30, tzinfo=UTC), "2024-05-17T08:30:00+00:00"),
    ],
)
def test_text(raw, expected) -> None:
    assert coerce_value(FieldType.TEXT, raw) == expected


def test_text_refuses_containers() -> None:
    with pytest.raises(Invalid, match="note: expected text, got list"):
        coerce_value("text", ["a"], label="note")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, 7),
        (2.0, 2),
        (2.25, 2.25),
        ("42", 42),
        (" 1 000 ", 1000),
        ("1\u00a0000", 1000),
        ("3,5", 3.5),
        ("3.5", 3.5),
        ("-0,25", -0.25),
        ("1e3", 1000),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_number(raw, expected) -> None:
    value = coerce_value(FieldType.NUMBER, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "amount: expected a number, got true/false"),
        (math.inf, "amount: expected a finite number"),
        (math.nan, "amount: expected a finite number"),
        ("nan", "amount: expected a finite number"),
        ("1e400", "amount: expected a finite number"),
        ("twelve", "amount: 'twelve' is not a number"),
        ("1,000,000", "amount: '1,000,000' is not a number"),
        ("1.000,5", "amount: '1.000,5' is not a number"),
        ([1], "amount: expected a number, got list"),
    ],
)
def test_number_refused(raw, message) -> None:
    with pytest.raises(Invalid) as err:
        coerce_value(FieldType.NUMBER, raw, label="amount")
    assert err.value.message == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-02-29", "2024-02-29"),
        (" 29.02.2024 ", "2024-02-29"),
        ("1.2.2024", "2024-02-01"),
        (date(2023, 1, 31), "2023-01-31"),
        (datetime(2023, 1, 31, 23, 0, tzinfo=UTC), "2023-01-31"),
    ],
)
def test_date(raw, expected) -> None:
    assert coerce_value(FieldType.DATE, raw) == expected


@pytest.mark.parametrize("raw", ["2023-02-29", "31.04.2024", "tomorrow", ""])
def test_date_refused_names_the_formats(raw) -> None:
    with pytest.raises(Invalid) as err:
        coerce_value(FieldType.DATE, raw, label="born")
    assert err.value.message == f"born: '{raw}' is not a date (use YYYY-MM-DD or DD.MM.YYYY)"


def test_date_refuses_a_number() -> None:
    with pytest.raises(Invalid, match="born: expected a date, got int"):
        coerce_value(FieldType.DATE, 20240101, label="born")


@pytest.mark.parametrize("raw", [True, 1, 1.0, "true", "Yes", " JA ", "1", "y", "j", "x", "X"])
def test_bool_true(raw) -> None:
    assert coerce_value(FieldType.BOOL, raw) is True


@pytest.mark.parametrize("raw", [False, 0, 0.0, "false", "No", "nei", "0", "n", "", "  "])
def test_bool_false(raw) -> None:
    assert coerce_value(FieldType.BOOL, raw) is False


@pytest.mark.parametrize("raw", [2, 0.5, "maybe", "ok", [True]])
def test_bool_refused(raw) -> None:
    with pytest.raises(Invalid) as err:
        coerce_value(FieldType.BOOL, raw, label="vip")
    assert err.value.message == f"vip: '{raw}' is not true or false"


def test_unknown_type_is_refused() -> None:
    with pytest.raises(Invalid, match="x: unknown field type 'colour'"):
        coerce_value("colour", "red", label="x")


def test_plain_string_types_are_accepted() -> None:
    assert coerce_value("number", "5") == 5
    assert coerce_value("bool", "ja") is True


# --- properties ------------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
values = {
    FieldType.TEXT: st.one_of(st.text(), st.integers(), finite_floats, st.booleans(), st.dates()),
    FieldType.NUMBER: st.one_of(st.integers(), finite_floats),
    FieldType.DATE: st.dates(),
    FieldType.BOOL: st.booleans(),
}


@given(st.data())
def test_property_coerce_is_idempotent(data) -> None:
    kind = data.draw(st.sampled_from(list(FieldType)))
    once = coerce_value(kind, data.draw(values[kind]))
    assert coerce_value(kind, once) == once


@given(st.integers())
def test_property_integers_round_trip_through_text(n) -> None:
    assert coerce_value(FieldType.NUMBER, str(n)) == n
    assert coerce_value(FieldType.NUMBER, coerce_value(FieldType.TEXT, n)) == n


@given(finite_floats)
def test_property_floats_round_trip_through_text(x) -> None:
    value = coerce_value(FieldType.NUMBER, repr(x))
    assert value == x
    assert value == coerce_value(FieldType.NUMBER, x)
    # and with the Norwegian decimal comma
    if "e" not in repr(x) and "." in repr(x):
        assert coerce_value(FieldType.NUMBER, repr(x).replace(".", ",")) == x


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
def test_property_dates_round_trip_in_both_formats(d) -> None:
    assert coerce_value(FieldType.DATE, d.isoformat()) == d.isoformat()
    assert coerce_value(FieldType.DATE, d.strftime("%d.%m.%Y")) == d.isoformat()
    assert date.fromisoformat(coerce_value(FieldType.DATE, d)) == d


@given(st.booleans())
def test_property_bools_round_trip_through_text(b) -> None:
    assert coerce_value(FieldType.BOOL, coerce_value(FieldType.TEXT, b)) is b


def test_date_of_an_aware_datetime_is_its_own_local_date() -> None:
    oslo_evening = datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    assert coerce_value(FieldType.DATE, oslo_evening) == "2024-01-01"
