"""Password hashing with Argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher

from domain.passwords import hash_password, needs_rehash, verify_password


def test_hash_is_argon2id_and_salted() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first.startswith("$argon2id$")
    assert "s3cret" not in first
    assert first != second  # a fresh salt every time
    assert verify_password(first, "s3cret") and verify_password(second, "s3cret")


def test_wrong_password_is_refused() -> None:
    stored = hash_password("s3cret")
    assert verify_password(stored, "s3cret ") is False
    assert verify_password(stored, "S3cret") is False
    assert verify_password(stored, "") is False


def test_unicode_password() -> None:
    stored = hash_password("blåbærsyltetøy")
    assert verify_password(stored, "blåbærsyltetøy")
    assert not verify_password(stored, "blabaersyltetoy")


def test_malformed_hash_never_raises() -> None:
    stored = hash_password("s3cret")
    assert verify_password("", "s3cret") is False
    assert verify_password("plain-text", "s3cret") is False
    assert verify_password(stored[:-6] + "AAAAAA", "s3cret") is False
    assert verify_password(stored.replace("$argon2id$", "$argon2i$"), "s3cret") is False


def test_needs_rehash_only_for_weaker_parameters() -> None:
    assert needs_rehash(hash_password("s3cret")) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("s3cret")
    assert verify_password(weak, "s3cret")  # still verifies ...
    assert needs_rehash(weak) is True  # ... but should be upgraded on the next login
