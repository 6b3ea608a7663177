"""The selection store runs against real Redis: the run's single server, and a Redis Cluster
(``redis_cluster_ports`` in tests/conftest.py); every core selection test runs on both, because
the key layout promises each owner's keys hash to one slot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from owners import forget_owner, new_owner_id
from redis.asyncio.cluster import RedisCluster

from presence.keys import live_key, owner_prefix
from presence.packing import pack_in_c


@pytest.fixture(params=["single", "cluster"])
async def store_redis(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Any]:
    """A client for the selection store: the run's single Redis, or the cluster."""
    if request.param == "cluster":
        ports = request.getfixturevalue("redis_cluster_ports")
        client: Any = RedisCluster(
            host="127.0.0.1", port=ports[0], decode_responses=True, max_connections=512
        )
        await client.initialize()
    else:  # packing commands as a node's client does (presence.packing)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=512)
        pack_in_c(client.connection_pool)
    yield client
    await client.aclose()


@pytest.fixture
async def owner(redis_url: str) -> AsyncIterator[int]:
    """A data owner of this test alone: tests share one Redis and never collide."""
    owner = new_owner_id()
    yield owner
    await forget_owner(redis_url, owner)


other_owner = owner  # a second, distinct data owner for tests of the wall between owners


# Reading every lock of one owner in one atomic step, to check rule 4 from Redis itself.
SCAN_OWNER = """
local prefix = ARGV[1]
local customers, users = {}, {}
for _, key in ipairs(redis.call('KEYS', prefix .. '*')) do
  if string.find(key, prefix .. 'cust:', 1, true) == 1 then
    local h = redis.call('HMGET', key, 'user', 'token')
    table.insert(customers, {string.sub(key, #prefix + 6), h[1] or '', h[2] or ''})
  elseif string.find(key, prefix .. 'user:', 1, true) == 1 then
    table.insert(users, {string.sub(key, #prefix + 6), redis.call('GET', key)})
  end
end
return {customers, users, redis.call('HGETALL', KEYS[1])}
"""


@dataclass(frozen=True)
class OwnerLocks:
    customers: dict[int, tuple[int, int]]  # customer id -> (user id, token)
    users: dict[int, int]  # user id -> customer id
    live: dict[int, dict[str, Any]]  # customer id -> live row

    def assert_rule_4(self) -> None:
        """No customer held twice, no user holding two, and all three views agree."""
        holders = [user for user, _token in self.customers.values()]
        assert len(holders) == len(set(holders)), f"a user holds two customers: {self.customers}"
        held = list(self.users.values())
        assert len(held) == len(set(held)), f"a customer is held twice: {self.users}"
        assert {u: c for c, (u, _t) in self.customers.items()} == self.users
        assert set(self.live) == set(self.customers)
        for customer_id, row in self.live.items():
            assert row["customer_id"] == customer_id
            assert (row["user_id"], row["token"]) == self.customers[customer_id]


async def scan_owner(client: Any, owner: int) -> OwnerLocks:
    reply = await client.eval(SCAN_OWNER, 1, live_key(owner), owner_prefix(owner))
    customers_raw, users_raw, live_raw = reply
    if isinstance(live_raw, dict):  # RESP3 / some clients answer HGETALL as a map
        live_pairs = list(live_raw.items())
    else:
        live_pairs = list(zip(live_raw[::2], live_raw[1::2], strict=True))
    return OwnerLocks(
        customers={int(c): (int(u), int(t)) for c, u, t in customers_raw},
        users={int(u): int(c) for u, c in users_raw},
        live={int(c): json.loads(row) for c, row in live_pairs},
    )


@pytest.fixture
def locks_of() -> Callable[[Any, int], Awaitable[OwnerLocks]]:
    """Read an owner's locks, customer keys, user keys and live rows, in one atomic scan."""
    return scan_owner
