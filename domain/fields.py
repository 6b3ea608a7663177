"""Values of typed fields (info fields, outcome details): one coercion, used at every edge."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from domain.errors import Invalid

if TYPE_CHECKING:
    from domain.model import FieldType

_TRUE = {"true", "yes", "ja", "1", "y", "j", "x"}
_FALSE = {"false", "no", "nei", "0", "n", ""}


def coerce_value(type_: FieldType | str, raw: Any, *, label: str = "value") -> Any:
    """Turn `raw` (from JSON or a spreadsheet cell) into the stored form of a field of `type_`.

    text -> str, number -> int or float, date -> ISO date string, bool -> bool.
    Raises Invalid naming the field and the problem.
    """
    kind = str(type_)
    if raw is None:
        return None
    if kind == "text":
        if isinstance(raw, bool | int | float | str):
            return str(raw).strip()
        if isinstance(raw, datetime | date):
            return raw.isoformat()
        raise Invalid(f"{label}: expected text, got {type(raw).__name__}")
    if kind == "number":
        return _number(raw, label)
    if kind == "date":
        return _date(raw, label)
    if kind == "bool":
        return _bool(raw, label)
    raise Invalid(f"{label}: unknown field type '{kind}'")


def _number(raw: Any, label: str) -> int | float:
    if isinstance(raw, bool):
        raise Invalid(f"{label}: expected a number, got true/false")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise Invalid(f"{label}: expected a finite number")
        return int(raw) if raw.is_integer() else raw
    if isinstance(raw, str):
        text = raw.strip().replace(" ", "").replace("\u00a0", "")
        if text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")  # Norwegian decimal comma
        try:
            return int(text)  # exact, even beyond a float's 53-bit precision
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"{label}: '{raw}' is not a number") from None
        return _number(value, label)
    raise Invalid(f"{label}: expected a number, got {type(raw).__name__}")


def _date(raw: Any, label: str) -> str:
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, str):
        text = raw.strip()
        for parse in (date.fromisoformat, _norwegian_date):
            try:
                return parse(text).isoformat()
            except ValueError:
                continue
        raise Invalid(f"{label}: '{raw}' is not a date (use YYYY-MM-DD or DD.MM.YYYY)")
    raise Invalid(f"{label}: expected a date, got {type(raw).__name__}")


def _norwegian_date(text: str) -> date:
    return datetime.strptime(text, "%d.%m.%Y").date()


def _bool(raw: Any, label: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Invalid(f"{label}: '{raw}' is not true or false")
