"""The HTTP request and reply bodies of docs/protocol.md as pydantic models.

Ids are integers inside the server and strings on the wire; replies coerce them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from domain.model import Role


class WireModel(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)


class LoginRequest(BaseModel):
    """`POST /api/auth/token`; fields a newer client adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class WireUser(WireModel):
    id: str
    name: str
    role: Role


class LoginReply(WireModel):
    token: str
    expires_at: datetime
    user: WireUser


class WireSegment(WireModel):
    id: str
    name: str


class WireAssignment(WireModel):
    id: str
    name: str
    segments: list[WireSegment]
    available: int
