"""Times on the wire: ISO 8601 in UTC with a "Z", from datetimes and from epoch milliseconds
(the selection store keeps times as epoch ms). One place, so every frame writes them alike."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(at: datetime | None) -> str | None:
    """A datetime (aware; naive ones are taken as UTC) as ISO 8601 UTC with "Z"; None stays."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with "Z"."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def iso_s(seconds: float) -> str:
    """Epoch seconds (a clock's float) as ISO 8601 UTC with "Z"."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
