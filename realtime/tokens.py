"""Login tokens: a base64url JSON payload `{uid, exp}` signed with HMAC-SHA256.

Stateless on purpose: any node holding the same DIALHUB_SECRET_KEY can check a token without a
round trip, which keeps server nodes interchangeable (docs/architecture.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A label mixed into the key, so a signature made for another purpose with the same secret
# can never pass as a login token.
_PURPOSE = b"dialhub/login-token/v1"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


def issue_token(
    secret: str, user_id: int, ttl_seconds: int, now: datetime | None = None
) -> IssuedToken:
    """A token for `user_id` that expires `ttl_seconds` from `now` (whole seconds)."""
    now = now or datetime.now(UTC)
    expires_at = (now + timedelta(seconds=ttl_seconds)).replace(microsecond=0)
    payload = json.dumps(
        {"uid": user_id, "exp": int(expires_at.timestamp())}, separators=(",", ":")
    ).encode()
    body = _b64encode(payload)
    return IssuedToken(token=f"{body}.{_sign(secret, body)}", expires_at=expires_at)


def read_token(secret: str, token: str, now: datetime | None = None) -> int | None:
    """The user id of a genuine, unexpired token; None for anything else (never raises)."""
    body, dot, signature = token.partition(".")
    expected = _sign(secret, body).encode()
    if not dot or not hmac.compare_digest(signature.encode(), expected):
        return None
    try:
        payload = json.loads(_b64decode(body))
        user_id, expires = payload["uid"], payload["exp"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None
    if not isinstance(user_id, int) or not isinstance(expires, int):
        return None
    if (now or datetime.now(UTC)).timestamp() >= expires:
        return None
    return user_id


def _sign(secret: str, body: str) -> str:
    key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return _b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest())


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
