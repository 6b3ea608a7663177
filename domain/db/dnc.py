"""The do-not-call list of a data owner: numbers that are never dialed.

Numbers are kept normalized (``normalize_phone``): digits only, with a leading ``+`` when the
number was written in international form (``00`` counts as ``+``). The normalization is the
same on the way in and at dial time, so "+47 900 00 000", "0047-90000000" and "+4790000000"
are one number. Numbers written without a country code are kept as their digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.db import tables as t
from domain.errors import DomainError, Invalid

d = t.dnc_numbers.c

_SEPARATORS = re.compile(r"[\s\-().\/]")
MIN_DIGITS, MAX_DIGITS = 3, 15  # E.164 numbers have at most 15 digits


class DoNotCall(DomainError):
    """Every number of the customer is on the data owner's do-not-call list."""

    code = "do_not_call"


def normalize_phone(raw: str) -> str:
    """E.164-ish: '+' and digits, or digits alone; anything else is refused with Invalid."""
    text = _SEPARATORS.sub("", raw or "")
    plus = text.startswith("+")
    if plus:
        text = text[1:]
    elif text.startswith("00"):
        plus, text = True, text[2:]
    if not text.isdigit() or not (MIN_DIGITS <= len(text) <= MAX_DIGITS) or not text.isascii():
        raise Invalid(f"not a phone number: {raw!r}")
    return ("+" if plus else "") + text


async def add(
    conn: AsyncConnection, owner: int, phone: str, at: datetime, *, by_user_id: int | None = None
) -> bool:
    """Put a number on the owner's list. False: it was there already."""
    number = normalize_phone(phone)
    if await _listed(conn, owner, [number]):
        return False
    await conn.execute(
        insert(t.dnc_numbers).values(
            data_owner_id=owner, phone=number, added_at=at, added_by=by_user_id
        )
    )
    return True


async def remove(conn: AsyncConnection, owner: int, phone: str) -> bool:
    """Take a number off the owner's list. False: it was not on it."""
    result = await conn.execute(
        delete(t.dnc_numbers).where(d.data_owner_id == owner, d.phone == normalize_phone(phone))
    )
    return bool(result.rowcount)


async def is_blocked(conn: AsyncConnection, owner: int, phone: str) -> bool:
    """True when the number is on the owner's list (another owner's list never counts)."""
    return bool(await _listed(conn, owner, [normalize_phone(phone)]))


async def first_callable(conn: AsyncConnection, owner: int, phones: Iterable[str]) -> str | None:
    """The first of a customer's numbers that may be called, normalized; None: none may
    (no valid number, or every one is on the list)."""
    numbers = []
    for phone in phones:
        try:
            numbers.append(normalize_phone(phone))
        except Invalid:
            continue
    blocked = await _listed(conn, owner, numbers)
    return next((n for n in numbers if n not in blocked), None)


async def number_to_call(conn: AsyncConnection, owner: int, phones: Iterable[str]) -> str:
    """The number a call to this customer goes to; DoNotCall when every number is listed,
    Invalid when the customer has no valid number at all."""
    number = await first_callable(conn, owner, phones)
    if number is not None:
        return number
    for phone in phones:
        try:
            normalize_phone(phone)
        except Invalid:
            continue
        raise DoNotCall("the customer's numbers are on the do-not-call list")
    raise Invalid("the customer has no phone number to call")


async def _listed(conn: AsyncConnection, owner: int, numbers: list[str]) -> set[str]:
    if not numbers:
        return set()
    rows = await conn.execute(select(d.phone).where(d.data_owner_id == owner, d.phone.in_(numbers)))
    return {r.phone for r in rows}
