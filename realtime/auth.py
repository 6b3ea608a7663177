"""Who is asking: password login (issuing a token) and bearer-token authentication."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from starlette.requests import HTTPConnection

from domain.db import repositories
from domain.model import User
from domain.passwords import hash_password, verify_password
from realtime.api_models import LoginReply, LoginRequest, WireUser
from realtime.errors import unauthorized
from realtime.services import Services
from realtime.tokens import issue_token, read_token

WRONG_CREDENTIALS = "wrong username or password"


async def login(services: Services, *, body: LoginRequest) -> LoginReply:
    """Check the password (Argon2id, off the event loop) and issue a signed, expiring token."""
    async with services.engine.connect() as conn:
        found = await repositories.get_user_by_username(conn, body.username)
    # An unknown user still costs one hash check, so timing does not tell which usernames exist.
    user, password_hash = found if found is not None else (None, _dummy_hash())
    valid = await asyncio.to_thread(verify_password, password_hash, body.password)
    if user is None or not valid or not user.active:
        raise unauthorized(WRONG_CREDENTIALS)
    settings = services.settings
    issued = issue_token(settings.secret_key, user.id, settings.token_ttl_seconds)
    return LoginReply(
        token=issued.token,
        expires_at=issued.expires_at,
        user=WireUser(id=user.id, name=user.name, role=user.role),
    )


async def user_from_token(services: Services, token: str | None) -> User | None:
    """The active user a genuine, unexpired token names; None otherwise."""
    if not token:
        return None
    user_id = read_token(services.settings.secret_key, token)
    if user_id is None:
        return None
    async with services.engine.connect() as conn:
        user = await repositories.get_user(conn, user_id)
    return user if user is not None and user.active else None


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def require_user(services: Services, connection: HTTPConnection) -> User:
    user = await user_from_token(services, bearer_token(connection))
    if user is None:
        raise unauthorized()
    return user


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not a real password")
