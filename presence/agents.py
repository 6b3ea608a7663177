"""Agent presence and per-user event streams in Redis, across tabs and server nodes.

A user is online while at least one of its connections holds a *lease*: an entry in the owner's
connection set scored with the time it runs out. The node serving a connection renews its
leases on every heartbeat; a closed connection's lease is left to run out, so a reload does not
flash offline, and a killed node's leases run out by themselves. Every node sweeps run-out
leases with one script; a lease is removed by exactly one sweeper (ZREM answers once), so
several nodes sweeping at once publish each leave once.

Shown state (rule 9: supervisors see whether a holder is still online):
``offline`` (no lease) / ``paused`` / ``wrap_up`` (set by the agent) / ``working`` (holds a
customer) / ``available``. Each change is published as ``presence.changed`` to the watching
supervisors, through the same per-user event streams every other event uses: ``seq`` counted
per user (INCR) and the frame kept in a bounded stream for replay. An event for one user is
PUBLISHed on the user's channel; an event for the owner's watchers is PUBLISHed once, on the
owner's watchers channel, naming each watcher's seq, so a node receives it once however many
watchers it serves. Every key carries the owner's hash tag, so each script runs in one slot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from presence.keys import owner_prefix

SET_STATES = ("available", "paused", "wrap_up", "talking")
"""States set for an agent (``talking`` and ``wrap_up`` also by the dialer); ``working`` and
``offline`` follow from what it does."""

OWNERS_KEY = "dh:pres:owners"
"""Set of data owners that ever had a lease: what the sweepers walk (one key, any slot)."""

STREAM_TTL_MS = 24 * 3600 * 1000
SWEEP_BATCH = 1000


def epoch_ms() -> int:
    return int(time.time() * 1000)


# Keys ---------------------------------------------------------------------------------------


def leases_key(owner: int) -> str:
    """ZSET: '<user>:<connection>' -> epoch ms its lease runs out."""
    return f"{owner_prefix(owner)}pres:leases"


def count_key(owner: int) -> str:
    """Hash: user id -> number of leases it holds (absent: offline)."""
    return f"{owner_prefix(owner)}pres:count"


def state_key(owner: int) -> str:
    """Hash: user id -> the state the agent set (available / paused / wrap_up)."""
    return f"{owner_prefix(owner)}pres:state"


def shown_key(owner: int) -> str:
    """Hash: user id -> 'online|state|customer' last published, so only changes go out."""
    return f"{owner_prefix(owner)}pres:shown"


def watchers_key(owner: int) -> str:
    """ZSET: supervisor user id -> epoch ms its watch runs out (renewed by heartbeats)."""
    return f"{owner_prefix(owner)}watch"


def seq_key(owner: int, user_id: int) -> str:
    """Counter: the last event seq of the user."""
    return f"{owner_prefix(owner)}seq:{int(user_id)}"


def stream_key(owner: int, user_id: int) -> str:
    """Stream: the user's recent event frames, entry id '<seq>-0', trimmed to about N."""
    return f"{owner_prefix(owner)}evs:{int(user_id)}"


def channel(owner: int, user_id: int) -> str:
    """Pub/sub channel of one user: every node serving one of its connections subscribes."""
    return f"{owner_prefix(owner)}ch:{int(user_id)}"


WATCHERS_CHANNEL = "ch:watchers"


def watchers_channel(owner: int) -> str:
    """Pub/sub channel of the owner's watcher events: every node serving a supervisor of the
    owner subscribes. A message is '<now ms>|<event>|<user>:<seq>,...|<data JSON>'."""
    return f"{owner_prefix(owner)}{WATCHERS_CHANNEL}"


def event_frame(seq: int, event: str, data: str) -> str:
    """The event frame as the client gets it and the stream keeps it (the same text as the
    scripts build)."""
    return f'{{"type":"event","seq":{seq},"event":"{event}","data":{data}}}'


# Scripts ------------------------------------------------------------------------------------

EMIT_LUA = """
-- Shared by every script that emits events. Keys are derived from the owner prefix (ARGV), so
-- they share the hash tag of the KEYS the caller declares.
--
-- keep: seq = INCR seq:<uid>; the frame goes to the stream evs:<uid> (entry id '<seq>-0', so a
-- replay is one XRANGE).
-- emit: keep, then PUBLISH on ch:<uid> as '<now ms>|<seq>|<event>|<frame>'.
-- emit_watchers: keep for every watcher, then one PUBLISH on ch:watchers as
-- '<now ms>|<event>|<uid>:<seq>,...|<data>': nodes build each watcher's frame (the same text
-- as the stream's), so an event costs one message per node, not one per watcher.
-- Invariant: seq rises by one per user, and stream order is publish order.
local STREAM_TTL = STREAM_TTL_MS

local function keep(prefix, uid, name, data, maxlen)
  local seq = redis.call('INCR', prefix .. 'seq:' .. uid)
  local frame = '{"type":"event","seq":' .. seq .. ',"event":"' .. name
    .. '","data":' .. data .. '}'
  local stream = prefix .. 'evs:' .. uid
  local added = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'f', frame)
  if type(added) == 'table' and added.err then
    -- The counter was lost but an old stream was not: start the stream again.
    redis.call('DEL', stream)
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'f', frame)
  end
  redis.call('PEXPIRE', stream, STREAM_TTL)
  return seq, frame
end

local function emit(prefix, uid, name, data, now, maxlen)
  local seq, frame = keep(prefix, uid, name, data, maxlen)
  redis.call('PUBLISH', prefix .. 'ch:' .. uid, now .. '|' .. seq .. '|' .. name .. '|' .. frame)
  return seq
end

local function emit_watchers(prefix, name, data, now, maxlen)
  local key = prefix .. 'watch'
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  local users = redis.call('ZRANGE', key, 0, -1)
  if #users == 0 then
    return 0
  end
  local to = {}
  for i, uid in ipairs(users) do
    to[i] = uid .. ':' .. keep(prefix, uid, name, data, maxlen)
  end
  redis.call('PUBLISH', prefix .. 'WATCHERS_CHANNEL',
    now .. '|' .. name .. '|' .. table.concat(to, ',') .. '|' .. data)
  return #users
end
""".replace("STREAM_TTL_MS", str(STREAM_TTL_MS)).replace("WATCHERS_CHANNEL", WATCHERS_CHANNEL)

EVENTS_LUA = (
    """
-- events: emit one event to users, or to the owner's watching supervisors.
-- KEYS[1] dh:{o:N}:watch (declares the slot); ARGV[1] prefix, ARGV[2] 'users' or 'watchers',
-- ARGV[3] event name, ARGV[4] data JSON, ARGV[5] now ms, ARGV[6] stream length, ARGV[7..] users.
-- Returns the seqs given out ('users') or the number of watchers reached ('watchers').
"""
    + EMIT_LUA
    + """
local prefix, now, maxlen = ARGV[1], ARGV[5], ARGV[6]
if ARGV[2] == 'watchers' then
  return emit_watchers(prefix, ARGV[3], ARGV[4], now, maxlen)
end
local seqs = {}
for i = 7, #ARGV do
  seqs[#seqs + 1] = emit(prefix, ARGV[i], ARGV[3], ARGV[4], now, maxlen)
end
return seqs
"""
)

PRESENCE_LUA = (
    """
-- presence: leases, set states and the presence.changed events they cause.
-- KEYS[1] dh:{o:N}:pres:leases (declares the slot; the other keys share its tag)
-- ARGV[1] prefix, ARGV[2] op, ARGV[3] now ms, ARGV[4] stream length, then per op:
--   join    ARGV[5] lease until, ARGV[6] user, ARGV[7] connection   -> leases of the user
--   renew   ARGV[5] lease until, ARGV[6..] '<user>:<connection>'     -> leases renewed
--   set     ARGV[5] user, ARGV[6] state                             -> shown state
--   refresh ARGV[5] user                                            -> shown state
--   sweep   ARGV[5] batch                                           -> leases swept
-- Invariant: pres:count of a user equals its entries in pres:leases, and a shown state is
-- published once per change, whichever node or sweeper causes it.
"""
    + EMIT_LUA
    + """
local prefix, op, now, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local leases, count = KEYS[1], prefix .. 'pres:count'

local function shown(uid)
  local n = tonumber(redis.call('HGET', count, uid) or '0')
  local cid = redis.call('GET', prefix .. 'user:' .. uid) or ''
  if n <= 0 then
    return '0', 'offline', cid
  end
  local set = redis.call('HGET', prefix .. 'pres:state', uid) or 'available'
  if set == 'paused' or set == 'wrap_up' or set == 'talking' then
    return '1', set, cid
  end
  if cid ~= '' then
    return '1', 'working', cid
  end
  return '1', 'available', cid
end

local function publish_if_changed(uid)
  local online, state, cid = shown(uid)
  local text = online .. '|' .. state .. '|' .. cid
  if redis.call('HGET', prefix .. 'pres:shown', uid) ~= text then
    redis.call('HSET', prefix .. 'pres:shown', uid, text)
    local data = {user_id = uid, online = online == '1', state = state}
    if cid ~= '' then
      data.customer_id = cid
    end
    emit_watchers(prefix, 'presence.changed', cjson.encode(data), now, maxlen)
  end
  return state
end

local function add_lease(member, uid, expires)
  if redis.call('ZADD', leases, expires, member) == 1 then
    redis.call('HINCRBY', count, uid, 1)
    return true
  end
  return false
end

if op == 'join' then
  local uid = ARGV[6]
  add_lease(uid .. ':' .. ARGV[7], uid, ARGV[5])
  publish_if_changed(uid)
  return tonumber(redis.call('HGET', count, uid) or '0')
elseif op == 'renew' then
  -- A lease swept while its node was too busy to renew it comes back here.
  for i = 6, #ARGV do
    local member = ARGV[i]
    local uid = string.match(member, '^([^:]+):')
    if add_lease(member, uid, ARGV[5]) then
      publish_if_changed(uid)
    end
  end
  return #ARGV - 5
elseif op == 'set' then
  redis.call('HSET', prefix .. 'pres:state', ARGV[5], ARGV[6])
  return publish_if_changed(ARGV[5])
elseif op == 'refresh' then
  return publish_if_changed(ARGV[5])
elseif op == 'sweep' then
  local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. now, 'LIMIT', 0, ARGV[5])
  for _, member in ipairs(gone) do
    if redis.call('ZREM', leases, member) == 1 then
      local uid = string.match(member, '^([^:]+):')
      if redis.call('HINCRBY', count, uid, -1) <= 0 then
        redis.call('HDEL', count, uid)
        redis.call('HDEL', prefix .. 'pres:state', uid)
      end
      publish_if_changed(uid)
    end
  end
  return #gone
end
return redis.error_reply('unknown op ' .. tostring(op))
"""
)


# Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """What supervisors see of one user."""

    user_id: int
    online: bool
    state: str
    customer_id: int | None = None

    def wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": str(self.user_id),
            "online": self.online,
            "state": self.state,
        }
        if self.customer_id is not None:
            data["customer_id"] = str(self.customer_id)
        return data


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shown(user_id: int, raw: Any) -> Shown:
    online, state, customer = _text(raw).split("|", 2)
    return Shown(int(user_id), online == "1", state, int(customer) if customer else None)


# The stores ---------------------------------------------------------------------------------


class UserEvents:
    """Per-user event streams: emit (seq, stream, publish) and replay after a reconnect."""

    def __init__(self, redis: Any, *, stream_length: int = 256) -> None:
        self.redis = redis
        self.stream_length = stream_length
        self.script = redis.register_script(EVENTS_LUA)

    async def to_users(
        self,
        owner: int,
        user_ids: Iterable[int],
        event: str,
        data: dict[str, Any],
        *,
        started_ms: int | None = None,
    ) -> list[int]:
        """Emit one event to each user; the seqs given out, in order. ``started_ms`` (when the
        cause began) travels with the publish, so receiving nodes can time the whole path."""
        ids = [str(int(u)) for u in user_ids]
        if not ids:
            return []
        at = epoch_ms() if started_ms is None else int(started_ms)
        reply = await self.script(
            keys=[watchers_key(owner)],
            args=[owner_prefix(owner), "users", event, _json(data), at, self.stream_length, *ids],
        )
        return [int(s) for s in reply]

    async def to_watchers(self, owner: int, event: str, data: dict[str, Any]) -> int:
        """Emit one event to every supervisor watching the owner; how many it reached."""
        return int(
            await self.script(
                keys=[watchers_key(owner)],
                args=[
                    owner_prefix(owner),
                    "watchers",
                    event,
                    _json(data),
                    epoch_ms(),
                    self.stream_length,
                ],
            )
        )

    async def last_seq(self, owner: int, user_id: int) -> int:
        value = await self.redis.get(seq_key(owner, user_id))
        return 0 if value is None else int(_text(value))

    async def since(
        self, owner: int, user_id: int, after: int, limit: int
    ) -> tuple[list[tuple[int, str]], int]:
        """Frames after seq ``after`` (at most ``limit``) and the user's last seq."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(seq_key(owner, user_id))
            pipe.xrange(stream_key(owner, user_id), min=f"{int(after) + 1}-0", count=limit)
            last, entries = await pipe.execute()
        frames = []
        for entry_id, fields in entries:
            seq = int(_text(entry_id).split("-", 1)[0])
            frame = fields.get("f") if "f" in fields else fields.get(b"f")
            frames.append((seq, _text(frame)))
        return frames, 0 if last is None else int(_text(last))

    async def watch(self, owner: int, user_id: int, until_ms: int) -> None:
        """The user's supervisor events (presence, selections) are emitted until then."""
        await self.redis.zadd(watchers_key(owner), {str(int(user_id)): int(until_ms)}, gt=True)


class AgentPresence:
    """Leases, set states and the presence events of every data owner."""

    def __init__(self, redis: Any, *, timeout_s: float, stream_length: int = 256) -> None:
        self.redis = redis
        self.timeout_ms = int(timeout_s * 1000)
        self.stream_length = stream_length
        self.script = redis.register_script(PRESENCE_LUA)

    async def _run(self, owner: int, op: str, *args: Any) -> Any:
        return await self.script(
            keys=[leases_key(owner)],
            args=[owner_prefix(owner), op, epoch_ms(), self.stream_length, *args],
        )

    async def join(self, owner: int, user_id: int, connection_id: str) -> int:
        """A connection opened: take a lease; the number of leases the user holds."""
        await self.redis.sadd(OWNERS_KEY, str(int(owner)))
        return int(
            await self._run(
                owner, "join", epoch_ms() + self.timeout_ms, int(user_id), connection_id
            )
        )

    async def renew(self, owner: int, members: Sequence[tuple[int, str]]) -> None:
        """Heartbeat: push the leases of live connections one timeout ahead."""
        if members:
            until = epoch_ms() + self.timeout_ms
            await self._run(owner, "renew", until, *(f"{int(u)}:{c}" for u, c in members))

    async def leave(self, owner: int, user_id: int, connection_id: str) -> None:
        """A connection closed: its lease runs out one timeout from now (no flash on reload)."""
        until = epoch_ms() + self.timeout_ms
        await self.redis.zadd(
            leases_key(owner), {f"{int(user_id)}:{connection_id}": until}, xx=True
        )

    async def set_state(self, owner: int, user_id: int, state: str) -> str:
        """The agent says available / paused / wrap_up; the state supervisors now see."""
        if state not in SET_STATES:
            raise ValueError(f"not a state an agent sets: {state!r}")
        return _text(await self._run(owner, "set", int(user_id), state))

    async def refresh(self, owner: int, user_id: int) -> str:
        """Re-read the user's state after its selection changed (working <-> available)."""
        return _text(await self._run(owner, "refresh", int(user_id)))

    async def sweep(self, owner: int) -> int:
        """End run-out leases of one owner, publishing each user that went offline."""
        return int(await self._run(owner, "sweep", SWEEP_BATCH))

    async def owners(self) -> list[int]:
        return sorted(int(_text(o)) for o in await self.redis.smembers(OWNERS_KEY))

    async def snapshot(self, owner: int) -> dict[int, Shown]:
        """user id -> what supervisors see, for every user ever shown (others are offline)."""
        rows = await self.redis.hgetall(shown_key(owner))
        return {int(_text(uid)): _shown(int(_text(uid)), raw) for uid, raw in rows.items()}

    async def online_users(self, owner: int) -> set[int]:
        """The users supervisors now see online (as `snapshot`, without building each Shown)."""
        rows = await self.redis.hgetall(shown_key(owner))
        return {int(_text(uid)) for uid, raw in rows.items() if _text(raw).startswith("1|")}

    async def shown(self, owner: int, user_id: int) -> Shown:
        raw = await self.redis.hget(shown_key(owner), str(int(user_id)))
        return Shown(int(user_id), False, "offline") if raw is None else _shown(user_id, raw)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)
