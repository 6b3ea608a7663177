"""Redis commands packed in hiredis's C code, all of a command's arguments in one call.

redis-py, given hiredis, still passes each argument of a command through its Python encoder
before hiredis packs them: about 1.2 µs an argument. A group commit's Redis steps carry a few
hundred (``move_on_many.lua``: four keys and four arguments a move), so a batch of 27 moves
spent 0.27 ms of the node's CPU packing one call where hiredis alone packs it in 0.04 ms.
hiredis takes ``str`` (as UTF-8), ``bytes``, ``int`` and ``float`` and writes each exactly as
redis-py's encoder does; a command with anything else (an ``IntEnum``, a ``memoryview``, a value
redis-py refuses with its ``DataError``) or a command name of several words goes the way
redis-py packs it, with the same bytes or the same error.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool

try:
    import hiredis
except ImportError:  # pragma: no cover: a dependency (redis[hiredis]); without it, as redis-py
    hiredis = None


class _PackedInC:
    """A Redis connection class's ``pack_command`` (pipelines use it too) through hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0] if args else None
        several_words = isinstance(name, str | bytes) and (
            " " in name if isinstance(name, str) else b" " in name
        )
        if not several_words:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a type hiredis does not take: redis-py's encoder decides
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


def pack_in_c(pool: ConnectionPool) -> ConnectionPool:
    """``pool``, its connections from now on packing commands in C (see the module); as it was
    where hiredis is missing. Call before the pool's first connection: those it holds already
    keep packing as they did."""
    base = pool.connection_class
    if hiredis is not None and not issubclass(base, _PackedInC):
        pool.connection_class = type(base.__name__, (_PackedInC, base), {})
    return pool
