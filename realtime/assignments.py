"""What a user may work on: the assignments granted to it (rule 3), with available counts."""

from __future__ import annotations

from domain.db import repositories
from domain.model import User
from realtime.api_models import WireAssignment
from realtime.services import Services


async def list_assignments(services: Services, *, user: User) -> list[WireAssignment]:
    """`GET /api/assignments`: the user's assignments; an admin sees its data owner's all."""
    async with services.engine.connect() as conn:
        rows = await repositories.visible_assignments(conn, user)
    return [WireAssignment.model_validate(row) for row in rows]
