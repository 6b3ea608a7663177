"""The selection store's Lua scripts: read once from ``presence/lua/*.lua``, loaded by sha.

Each script is registered with the client (redis-py's AsyncScript): calls go out as EVALSHA and
a NOSCRIPT answer (a restarted or failed-over Redis) loads the script again and retries.

A script that does the work of others in one step (``COMPOSED``) is built from their bodies,
each wrapped as a local function of its name taking its own KEYS and ARGV, followed by its own
file: one rule, one place, also when two steps must be atomic together.
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
    "move_on",
    "settle",
    "hand_over",
    "move_on_many",
    "settle_many",
)

COMPOSED = {
    "move_on": ("release", "claim_next"),
    "settle": ("release",),
    "hand_over": ("release", "select"),
    "move_on_many": ("release", "claim_next", "move_on"),
    "settle_many": ("release", "settle"),
}
"""Scripts whose file calls other scripts' bodies as local functions."""


def _file(name: str) -> str:
    return resources.files("presence").joinpath("lua", f"{name}.lua").read_text("utf-8")


@cache
def source(name: str) -> str:
    """The script ``name`` as sent to Redis: ``presence/lua/<name>.lua``, after the bodies of
    the scripts it is composed of (``COMPOSED``) as local functions."""
    parts = [
        f"local function {part}(KEYS, ARGV)\n{_file(part)}\nend\n"
        for part in COMPOSED.get(name, ())
    ]
    return "".join(parts) + _file(name)


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
    move_on: AsyncScript
    settle: AsyncScript
    hand_over: AsyncScript
    move_on_many: AsyncScript
    settle_many: AsyncScript

    @classmethod
    def register(cls, client: Any) -> Scripts:
        return cls(**{name: client.register_script(source(name)) for name in SCRIPT_NAMES})

    async def load(self, client: Any) -> None:
        """SCRIPT LOAD every script now (on a cluster: on every primary), not on first use."""
        for name in SCRIPT_NAMES:
            await client.script_load(source(name))
