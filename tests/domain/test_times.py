"""Times on the wire: one format, ISO 8601 UTC with "Z", whatever the source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from domain.times import iso, iso_ms, iso_s

AT = datetime(2026, 3, 1, 12, 30, 5, 250_000, tzinfo=UTC)


def test_every_source_gives_the_same_text() -> None:
    text = "2026-03-01T12:30:05.250000Z"
    assert iso(AT) == text
    assert iso(AT.astimezone(timezone(timedelta(hours=1)))) == text  # converted to UTC
    assert iso(AT.replace(tzinfo=None)) == text  # a naive time is UTC (SQLite gives those)
    assert iso_ms(int(AT.timestamp() * 1000)) == text
    assert iso_s(AT.timestamp()) == text
    assert iso(None) is None
