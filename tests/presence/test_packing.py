"""presence.packing: commands packed in hiredis's C code are the bytes redis-py would send, the
errors redis-py would raise, and the answers Redis gives either way."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from presence.packing import pack_in_c


class Mode(enum.StrEnum):
    LIST = "list"


class Level(enum.IntEnum):
    HIGH = 7


ARGUMENTS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "{o:1}:cust:5", "{o:1}:user:9", 5, 9, 123456789012, "list"),
    ("SET", "k", 1.5),
    ("SET", "k", 1e20),
    ("SET", "k", -0.0),
    ("SET", "k", 10**30),
    ("SET", "k", "blåbær ✓"),
    ("SET", b"k", b"\xff\x00raw"),
    ("SET", "k", Mode.LIST),
    ("SET", "k", Level.HIGH),  # hiredis refuses an IntEnum: packed as redis-py packs it
    ("SET", "k", memoryview(b"view")),
    ("SET", "k", bytearray(b"array")),
    ("CLIENT SETNAME", "node-1"),  # a name of several words is split as redis-py splits it
    (b"CONFIG GET", b"maxmemory"),
    ("SET", "k", ""),
]


def joined(chunks: list[bytes]) -> bytes:
    return b"".join(bytes(chunk) for chunk in chunks)


@pytest.mark.parametrize("args", ARGUMENTS, ids=lambda args: repr(args[-1])[:24])
def test_a_command_is_packed_to_the_bytes_redis_py_sends(args: tuple[Any, ...]) -> None:
    plain = Connection()
    packed = pack_in_c(aioredis.ConnectionPool()).make_connection()
    assert isinstance(packed, Connection)
    assert joined(packed.pack_command(*args)) == joined(plain.pack_command(*args))


@pytest.mark.parametrize("value", [None, True, object()])
def test_a_value_redis_refuses_raises_its_data_error(value: Any) -> None:
    plain = Connection()
    packed = pack_in_c(aioredis.ConnectionPool()).make_connection()
    with pytest.raises(DataError):
        plain.pack_command("SET", "k", value)
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", value)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0", SSLConnection),
        ("unix:///tmp/no-such-redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_pool_keeps_its_kind_of_connection(url: str, kind: type) -> None:
    pool = aioredis.BlockingConnectionPool.from_url(url)
    pack_in_c(pool)
    pack_in_c(pool)  # twice changes nothing
    assert issubclass(pool.connection_class, kind)
    assert pool.connection_class.__mro__.count(kind) == 1
    assert isinstance(pool.make_connection(), kind)


@pytest.fixture
async def packed_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pack_in_c(client.connection_pool)
    yield client
    await client.aclose()


async def test_redis_answers_packed_commands_as_it_answers_redis_py(
    packed_client: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    script = "return {#KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[#ARGV]}"
    keys = [f"{{packing-test}}:k{i}" for i in range(200)]
    args: list[Any] = [12345678901234, 2.5, "blåbær", *range(300), Mode.LIST]
    ours = await packed_client.register_script(script)(keys=keys, args=args)
    theirs = await redis_client.register_script(script)(keys=keys, args=args)
    assert ours == theirs == [200, "12345678901234", "2.5", "blåbær", "list"]
    async with packed_client.pipeline(transaction=True) as pipe:
        pipe.set("{packing-test}:a", "é")
        pipe.incrbyfloat("{packing-test}:b", 0.5)
        pipe.get("{packing-test}:a")
        pipe.delete("{packing-test}:a", "{packing-test}:b")
        assert await pipe.execute() == [True, 0.5, "é", 2]
