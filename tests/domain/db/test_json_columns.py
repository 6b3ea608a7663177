"""JSON columns (JSONB on PostgreSQL, JSON text on SQLite) keep what they are given, through the
engine's encoder and decoder (domain.db.engine.json_dumps / json_loads)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db.driver import Statement
from domain.db.engine import json_dumps, json_loads
from domain.db.types import Json

VALUES: list[Any] = [
    {"token": 9_007_199_254_740_993, "holder_user_id": 42, "by_user_id": None},
    {"note": "Ærlig talt, ønsker å bli ringt på fredag", "tags": ["å", "ø", "🙂"]},
    {"account": 2**70},  # past 64 bits: orjson refuses it, the standard library writes it
    {"nested": {"list": [1, 2.5, True, False, None, "x"]}},
    [],
    {},
]


@pytest.mark.parametrize("value", VALUES)
async def test_a_json_column_keeps_what_it_is_given(engine: AsyncEngine, value: Any) -> None:
    statement = select(bindparam("v", type_=Json).label("v"))
    async with engine.begin() as conn:
        assert (await conn.execute(statement, {"v": value})).scalar_one() == value
        # The hot path's statements bind through the same encoder on the driver.
        assert (await Statement(statement).first(conn, {"v": value})).v == value


def test_the_encoder_writes_compact_json_with_text_keys() -> None:
    assert json_dumps({"a": 1, 2: [True, None]}) == '{"a":1,"2":[true,null]}'
    assert json_dumps({"n": 2**70}) == '{"n": 1180591620717411303424}'


def test_the_decoder_reads_what_the_former_encoder_wrote() -> None:
    assert json_loads('{"a": 1, "b": [1, 2]}') == {"a": 1, "b": [1, 2]}
    assert json_loads(b'{"x":"\\u00e6"}') == {"x": "æ"}
    assert str(json_loads('{"r": NaN}')["r"]) == "nan"  # only the standard library reads it
