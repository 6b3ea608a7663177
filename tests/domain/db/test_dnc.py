"""The do-not-call list: one normalized number per data owner, never crossing owners."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import dnc
from domain.db import repositories as repo
from domain.errors import Invalid

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("+47 900 00 000", "+4790000000"),
        ("0047-900-00-000", "+4790000000"),
        ("(+47) 900.00.000", "+4790000000"),
        ("90000000", "90000000"),
    ],
)
def test_normalize_phone(raw: str, normalized: str) -> None:
    assert dnc.normalize_phone(raw) == normalized


@pytest.mark.parametrize("raw", ["", "+", "call me", "+47 900 abc", "12", "+1234567890123456"])
def test_normalize_phone_refuses_what_is_no_number(raw: str) -> None:
    with pytest.raises(Invalid):
        dnc.normalize_phone(raw)


async def owner(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        made = await repo.create_data_owner(
            conn,
            f"dnc-{uuid.uuid4().hex[:10]}",
            id=random.SystemRandom().randrange(2_000_000_000, 2_100_000_000),
        )
    return made.id


async def test_add_check_remove_in_any_spelling(engine: AsyncEngine) -> None:
    mine, theirs = await owner(engine), await owner(engine)
    async with engine.begin() as conn:
        assert await dnc.add(conn, mine, "+47 900 00 001", NOW)
        assert not await dnc.add(conn, mine, "0047 90000001", NOW)  # the same number
        assert await dnc.is_blocked(conn, mine, "+4790000001")
        assert not await dnc.is_blocked(conn, theirs, "+4790000001")  # rule 3: own list only
        assert await dnc.first_callable(conn, mine, ["+47 900 00 001", "x", "+4790000002"]) == (
            "+4790000002"
        )
        assert await dnc.first_callable(conn, mine, ["0047 900 00 001"]) is None
        assert await dnc.remove(conn, mine, "+47 900 00 001")
        assert not await dnc.remove(conn, mine, "+47 900 00 001")
        assert not await dnc.is_blocked(conn, mine, "+4790000001")
