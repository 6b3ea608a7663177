"""Login tokens are stateless, signed and expiring: any node with the secret can check them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from realtime.tokens import issue_token, read_token

SECRET = "a-test-secret"
NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def test_a_token_names_its_user_until_it_expires() -> None:
    issued = issue_token(SECRET, 42, ttl_seconds=60, now=NOW)
    assert issued.expires_at == NOW + timedelta(seconds=60)
    assert read_token(SECRET, issued.token, now=NOW + timedelta(seconds=59)) == 42
    assert read_token(SECRET, issued.token, now=NOW + timedelta(seconds=60)) is None


def test_a_token_signed_with_another_secret_is_refused() -> None:
    issued = issue_token("another-secret", 42, ttl_seconds=60, now=NOW)
    assert read_token(SECRET, issued.token, now=NOW) is None


def test_a_token_with_a_changed_payload_is_refused() -> None:
    mine = issue_token(SECRET, 7, ttl_seconds=60, now=NOW).token
    theirs = issue_token(SECRET, 8, ttl_seconds=60, now=NOW).token
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]
    assert read_token(SECRET, forged, now=NOW) is None


def test_garbage_is_refused_without_raising() -> None:
    for token in ("", ".", "abc", "abc.def", "é.ü", "a.b.c", "%%%.%%%"):
        assert read_token(SECRET, token, now=NOW) is None
