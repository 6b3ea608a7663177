"""The selection store's Lua scripts: read once from ``presence/lua/*.lua``, loaded by sha.

Each script is registered with the client (redis-py's AsyncScript): calls go out as EVALSHA and
a NOSCRIPT answer (a restarted or failed-over Redis) loads the script again and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "select",
    "claim_next",
    "refill",
    "release",
    "release_user",
    "current",
    "holder",
    "rebuild",
)


@cache
def source(name: str) -> str:
    """The text of ``presence/lua/<name>.lua``."""
    return resources.files("presence").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Scripts:
    """Every selection script, registered on one client."""

    select: AsyncScript
    claim_next: AsyncScript
    refill: AsyncScript
    release: AsyncScript
    release_user: AsyncScript
    current: AsyncScript
    holder: AsyncScript
    rebuild: AsyncScript

    @classmethod
    def register(cls, client: Any) -> Scripts:
        return cls(**{name: client.register_script(source(name)) for name in SCRIPT_NAMES})

    async def load(self, client: Any) -> None:
        """SCRIPT LOAD every script now (on a cluster: on every primary), not on first use."""
        for name in SCRIPT_NAMES:
            await client.script_load(source(name))
