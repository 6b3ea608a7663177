"""The first worksheet of an .xlsx file as rows of cell values, read by python-calamine.

An import reads every cell of a sheet. openpyxl's read-only mode builds an object per cell
(and reads a sheet without a <dimension> twice): a third of a 100,000-row import's time once
its database work is set-based. python-calamine (Rust's calamine) reads the same sheet in a
seventh of the CPU. Its values are given here as openpyxl's `values_only` gives them, which is
what the import's type checks expect: str, int for a whole number, float, bool, datetime for a
date-formatted number (a date at midnight), time, timedelta, None for an empty cell, an empty
text and an error cell ("#N/A": no value to import); a formula's cached result.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import IO, Any

from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum

from domain.errors import Invalid


def read_rows(source: str | IO[bytes]) -> Iterator[list[Any]]:
    """The first worksheet's rows from row 1 on, as lists of values from column A on (a row
    missing from the file comes as an empty list). Raises Invalid when the file is no
    readable workbook."""
    try:
        book = CalamineWorkbook.from_object(source)
        worksheets = [m.name for m in book.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet]
        sheet = book.get_sheet_by_name(worksheets[0])  # not a chart sheet before it
        first_row, first_column = sheet.start or (0, 0)
        rows = sheet.iter_rows()
    except (CalamineError, ValueError, OSError, IndexError) as error:
        raise Invalid(f"not a readable xlsx file: {error}") from None
    for _ in range(first_row):
        yield []
    lead = [None] * first_column
    try:
        for row in rows:
            values = [_value(v) for v in row]
            while values and values[-1] is None:
                values.pop()
            yield [*lead, *values] if values and lead else values
    except (CalamineError, ValueError) as error:
        raise Invalid(f"not a readable xlsx file: {error}") from None
    finally:
        book.close()


def _value(value: Any) -> Any:
    if value == "":
        return None  # an empty cell
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # xlsx keeps every number as a float; openpyxl gives whole ones as int
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value
