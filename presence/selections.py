"""The selection store: the lock an agent holds on the customer it works (rules 4-12).

Redis holds the locks; every operation is one Lua script (presence/lua/), so the invariants of
rule 4 hold under any concurrency on any number of server processes: a user holds at most one
customer, a customer is held by at most one user. The database stays the durable truth: after
Redis loses its data, select and claim refuse with StoreNotReady until the caller rebuilds the
owner's locks from the database (``rebuild`` / ``mark_ready``).

Times are epoch milliseconds from the store's clock (injectable), never Redis TIME.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from domain.errors import AlreadySelected, Forbidden, SelectionLost, UserHasSelection
from domain.model import WorkMode
from presence.keys import (
    HopperKey,
    customer_key,
    fence_key,
    live_key,
    owner_prefix,
    ready_key,
    user_key,
)
from presence.scripts import Scripts

__all__ = [
    "AlreadySelected",
    "Claim",
    "Holder",
    "NotHolder",
    "Rebuilt",
    "Refilled",
    "Released",
    "Selection",
    "SelectionLost",
    "SelectionStore",
    "StoreNotReady",
    "UserHasSelection",
]

REFILL_BATCH = 1000
"""Candidates per refill script call: keeps each call short on a busy Redis."""


def epoch_ms() -> int:
    return int(time.time() * 1000)


# Errors -------------------------------------------------------------------------------------


class NotHolder(Forbidden):
    """Rule 7: only the holder, or someone with the right, releases a selection."""

    def __init__(self, customer_id: int, held_by: int, since: int) -> None:
        super().__init__("The customer is selected by another user.", held_by=str(held_by))
        self.customer_id = customer_id
        self.held_by = held_by
        self.since = since


class StoreNotReady(RuntimeError):
    """The owner's locks are not in Redis (restart, FLUSHALL): rebuild from the database first."""

    def __init__(self, owner: int) -> None:
        super().__init__(f"selection locks of data owner {owner} are not loaded")
        self.owner = owner


# Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """One live selection; ``since`` is epoch ms, ``token`` the fencing token (rule 8)."""

    owner: int
    customer_id: int
    user_id: int
    token: int
    since: int
    assignment_id: int | None
    segment_id: int | None
    mode: WorkMode
    resumed: bool = field(default=False, compare=False)
    """True when select found the user already holding this customer (rule 9)."""

    def row(self) -> dict[str, Any]:
        """The live-list row as stored in Redis (ids as ints, since in epoch ms)."""
        return {
            "user_id": self.user_id,
            "customer_id": self.customer_id,
            "assignment_id": self.assignment_id,
            "segment_id": self.segment_id,
            "since": self.since,
            "token": self.token,
            "mode": self.mode.value,
        }


@dataclass(frozen=True)
class Claim:
    """What claim_next did: the selection made (None: nothing free) and the hopper left over."""

    selection: Selection | None
    remaining: int
    skipped: int = 0

    def needs_refill(self, threshold: int) -> bool:
        """Refill before the hopper runs dry: at or under ``threshold`` candidates left."""
        return self.remaining <= threshold


@dataclass(frozen=True)
class Refilled:
    added: int
    length: int


@dataclass(frozen=True)
class Released:
    """A selection that ended: its former holder, its token, and who released it (rule 7)."""

    owner: int
    customer_id: int
    user_id: int
    token: int
    since: int
    by_user_id: int
    assignment_id: int | None = None
    segment_id: int | None = None

    @property
    def by_someone_else(self) -> bool:
        """Rule 8: the holder must be thrown out of the customer screen at once."""
        return self.by_user_id != self.user_id


@dataclass(frozen=True)
class Holder:
    """One lock read from the database, for rebuild."""

    customer_id: int
    user_id: int
    token: int
    since: int
    assignment_id: int | None = None
    segment_id: int | None = None
    mode: WorkMode = WorkMode.MANUAL


@dataclass(frozen=True)
class Rebuilt:
    loaded: int
    skipped: int
    fence: int
    already_ready: bool


# The store ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_id(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text else None


def _arg_id(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _release_call(
    owner: int, customer_id: int, by_user_id: int, token: int | None, supervisor: bool
) -> tuple[list[str], list[Any]]:
    """release.lua's KEYS and ARGV (also the first part of move_on.lua's and settle.lua's)."""
    return (
        [customer_key(owner, customer_id), live_key(owner), ready_key(owner)],
        [
            owner_prefix(owner),
            int(customer_id),
            int(by_user_id),
            "" if token is None else str(int(token)),
            "1" if supervisor else "0",
        ],
    )


def _selected_from(reply: Any, owner: int, user_id: int, customer_id: int) -> Selection:
    """select.lua's reply: the selection (made, or resumed), or the refusal."""
    status = _text(reply[0])
    if status == "ALREADY_SELECTED":
        raise AlreadySelected(int(customer_id), int(_text(reply[1])), int(_text(reply[2])))
    if status == "USER_HAS_SELECTION":
        raise UserHasSelection(int(_text(reply[1])))
    return Selection(
        owner=owner,
        customer_id=int(customer_id),
        user_id=int(user_id),
        token=int(_text(reply[1])),
        since=int(_text(reply[2])),
        assignment_id=_opt_id(reply[3]),
        segment_id=_opt_id(reply[4]),
        mode=WorkMode(_text(reply[5])),
        resumed=status == "RESUMED",
    )


def _released_from(reply: Any, owner: int, customer_id: int, by_user_id: int) -> Released | None:
    """release.lua's reply: the selection ended, None (nobody held it), or the refusal."""
    status = _text(reply[0])
    if status == "NONE":
        return None
    if status == "SELECTION_LOST":
        raise SelectionLost(int(customer_id), _opt_id(reply[1]))
    if status == "NOT_HOLDER":
        raise NotHolder(int(customer_id), int(_text(reply[1])), int(_text(reply[2])))
    return Released(
        owner=owner,
        customer_id=int(customer_id),
        user_id=int(_text(reply[1])),
        token=int(_text(reply[2])),
        since=int(_text(reply[3])),
        by_user_id=int(by_user_id),
        assignment_id=_opt_id(reply[4]),
        segment_id=_opt_id(reply[5]),
    )


def _claim_from(
    reply: Any, owner: int, user_id: int, hopper: HopperKey, mode: WorkMode | str
) -> Claim:
    """claim_next.lua's reply: the selection made, or none (with the hopper left over)."""
    status = _text(reply[0])
    if status == "USER_HAS_SELECTION":
        raise UserHasSelection(int(_text(reply[1])))
    if status == "EMPTY":
        return Claim(None, int(reply[1]), int(reply[2]))
    selection = Selection(
        owner=owner,
        customer_id=int(_text(reply[1])),
        user_id=int(user_id),
        token=int(_text(reply[2])),
        since=int(_text(reply[3])),
        assignment_id=hopper.assignment_id,
        segment_id=_opt_id(reply[4]),
        mode=WorkMode(mode),
    )
    return Claim(selection, int(reply[5]), int(reply[6]))


def _moved_from(
    reply: Any, owner: int, held: Selection, hopper: HopperKey, mode: WorkMode | str
) -> tuple[Released | None, Claim | None]:
    """move_on.lua's reply: the selection ended (None: nobody held it) and the claim made in
    its place (None: the user holds something else), or SelectionLost."""
    released_reply, claim_reply = reply
    released = _released_from(released_reply, owner, held.customer_id, held.user_id)
    if released is None or _text(claim_reply[0]) == "USER_HAS_SELECTION":
        return released, None
    return released, _claim_from(claim_reply, owner, held.user_id, hopper, mode)


def _settle_call(released: Released, selection: Selection | None) -> tuple[list[str], list[Any]]:
    """settle.lua's KEYS and ARGV."""
    owner = released.owner
    keys, args = _release_call(owner, released.customer_id, released.user_id, released.token, False)
    if selection is None:
        keys.append(live_key(owner))
        args += ["", ""]
    else:
        keys.append(customer_key(owner, selection.customer_id))
        args += [str(selection.user_id), str(selection.token)]
    return keys, args


def _settled_from(reply: Any) -> bool | None:
    """settle.lua's reply: whether the new selection is held; None: the locks are not loaded."""
    status, held = reply
    if _text(status) == "NOT_READY":
        return None
    return _text(held) == "1"


def _selection_from_row(owner: int, raw: Any) -> Selection:
    row = orjson.loads(raw)
    return Selection(
        owner=owner,
        customer_id=int(row["customer_id"]),
        user_id=int(row["user_id"]),
        token=int(row["token"]),
        since=int(row["since"]),
        assignment_id=row["assignment_id"],
        segment_id=row["segment_id"],
        mode=WorkMode(row["mode"]),
    )


class SelectionStore:
    """Selections of every data owner, kept in Redis (a client or a RedisCluster client)."""

    def __init__(
        self,
        redis: Any,
        *,
        clock: Callable[[], int] = epoch_ms,
        claim_scan_limit: int = 500,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.claim_scan_limit = claim_scan_limit
        self.scripts = Scripts.register(redis)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script up front (optional: a first call loads it anyway)."""
        await self.scripts.load(self.redis)

    async def _run(self, owner: int, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except ResponseError as exc:
            if str(exc).startswith("NOT_READY"):
                raise StoreNotReady(owner) from None
            raise

    # Rules 4, 6, 9: manual selection -----------------------------------------------------------

    async def select(
        self,
        owner: int,
        user_id: int,
        customer_id: int,
        *,
        assignment_id: int | None = None,
        segment_id: int | None = None,
        mode: WorkMode = WorkMode.MANUAL,
        now: int | None = None,
    ) -> Selection:
        """Select a customer for a user; selecting the one you hold returns it unchanged."""
        keys, args = self._select_call(
            owner, user_id, customer_id, assignment_id, segment_id, mode, now
        )
        reply = await self._run(owner, self.scripts.select, keys, args)
        return _selected_from(reply, owner, user_id, customer_id)

    def _select_call(
        self,
        owner: int,
        user_id: int,
        customer_id: int,
        assignment_id: int | None,
        segment_id: int | None,
        mode: WorkMode | str,
        now: int | None,
    ) -> tuple[list[str], list[Any]]:
        """select.lua's KEYS and ARGV (also the second part of hand_over.lua's)."""
        return (
            [
                ready_key(owner),
                customer_key(owner, customer_id),
                user_key(owner, user_id),
                live_key(owner),
                fence_key(owner),
            ],
            [
                int(customer_id),
                int(user_id),
                _arg_id(assignment_id),
                _arg_id(segment_id),
                WorkMode(mode).value,
                self.clock() if now is None else int(now),
            ],
        )

    async def hand_over(
        self,
        owner: int,
        held: Selection,
        to_user_id: int,
        *,
        mode: WorkMode = WorkMode.LIST,
        now: int | None = None,
    ) -> tuple[Released | None, Selection | None]:
        """Rule 4 in one step: ``held`` (a dialer line's selection, same token, else
        SelectionLost) passes to ``to_user_id``, with the list and segment it had. (None,
        None): nobody held it; raises UserHasSelection (nothing changed) when that user holds
        a customer already."""
        owner = int(owner)
        release_keys, release_args = _release_call(
            owner, held.customer_id, held.user_id, held.token, False
        )
        select_keys, select_args = self._select_call(
            owner, to_user_id, held.customer_id, None, None, mode, now
        )
        del select_args[2:4]  # the assignment and segment: the line's, as Redis has them
        released_reply, selected_reply = await self._run(
            owner, self.scripts.hand_over, release_keys + select_keys, release_args + select_args
        )
        if _text(released_reply[0]) == "USER_HAS_SELECTION":
            raise UserHasSelection(int(_text(released_reply[1])))
        released = _released_from(released_reply, owner, held.customer_id, held.user_id)
        if released is None:
            return None, None
        return released, _selected_from(selected_reply, owner, to_user_id, held.customer_id)

    # Rules 10-12: next right customer ----------------------------------------------------------

    def _claim_call(
        self,
        owner: int,
        user_id: int,
        hopper: HopperKey,
        mode: WorkMode | str,
        now: int | None,
        scan_limit: int | None,
    ) -> tuple[list[str], list[Any]]:
        """claim_next.lua's KEYS and ARGV (also the second part of move_on.lua's)."""
        return (
            [
                ready_key(owner),
                user_key(owner, user_id),
                live_key(owner),
                fence_key(owner),
                hopper.key(owner),
                hopper.segments_key(owner),
            ],
            [
                owner_prefix(owner),
                int(user_id),
                hopper.assignment_id,
                WorkMode(mode).value,
                self.clock() if now is None else int(now),
                scan_limit or self.claim_scan_limit,
            ],
        )

    async def claim_next(
        self,
        owner: int,
        user_id: int,
        hopper: HopperKey,
        *,
        mode: WorkMode = WorkMode.LIST,
        now: int | None = None,
        scan_limit: int | None = None,
    ) -> Claim:
        """Hand the user the first free candidate of the hopper, dropping held ones on the way."""
        keys, args = self._claim_call(owner, user_id, hopper, mode, now, scan_limit)
        reply = await self._run(owner, self.scripts.claim_next, keys, args)
        return _claim_from(reply, owner, user_id, hopper, mode)

    async def refill(
        self,
        owner: int,
        hopper: HopperKey,
        candidates: Iterable[int | tuple[int, int | None]],
        *,
        front: bool = False,
    ) -> Refilled:
        """Append candidates in order (id, or (id, segment id)); held or queued ones are skipped.
        ``front``: put them before every candidate waiting instead, queued ones moved up too."""
        packed: list[str] = []  # 'id:segment' (refill.lua's ARGV[3], joined per call)
        for candidate in candidates:
            if isinstance(candidate, tuple):
                customer_id, segment_id = candidate
            else:
                customer_id, segment_id = candidate, None
            packed.append(f"{int(customer_id)}:{_arg_id(segment_id)}")
        if not packed:
            return Refilled(0, await self.hopper_length(owner, hopper))
        added, length = 0, 0
        keys = [hopper.key(owner), hopper.segments_key(owner)]
        mode = "front" if front else "back"
        starts = range(0, len(packed), REFILL_BATCH)
        for start in reversed(starts) if front else starts:  # front: the last batch goes first
            batch = ",".join(packed[start : start + REFILL_BATCH])
            reply = await self._run(
                owner, self.scripts.refill, keys, [owner_prefix(owner), mode, batch]
            )
            added += int(reply[0])
            length = int(reply[1])
        return Refilled(added, length)

    async def hopper_length(self, owner: int, hopper: HopperKey) -> int:
        return int(await self.redis.zcard(hopper.key(owner)))

    async def hopper_ids(self, owner: int, hopper: HopperKey) -> list[int]:
        """The candidates waiting, in hand-out order."""
        return [int(_text(m)) for m in await self.redis.zrange(hopper.key(owner), 0, -1)]

    async def hopper_clear(self, owner: int, hopper: HopperKey) -> None:
        """Forget a hopper (its order changed, or list work on it ended)."""
        await self.redis.delete(hopper.key(owner), hopper.segments_key(owner))

    # Rule 7: release -----------------------------------------------------------------------

    async def release(
        self,
        owner: int,
        customer_id: int,
        by_user_id: int,
        *,
        token: int | None = None,
        supervisor: bool = False,
    ) -> Released | None:
        """End a selection: the holder's own, or anyone's with ``supervisor`` (rights checked
        by the caller). A given token must be the live one. None: nobody held it."""
        keys, args = _release_call(owner, customer_id, by_user_id, token, supervisor)
        reply = await self._run(owner, self.scripts.release, keys, args)
        return _released_from(reply, owner, customer_id, by_user_id)

    async def move_on(
        self,
        owner: int,
        held: Selection,
        hopper: HopperKey,
        *,
        mode: WorkMode = WorkMode.LIST,
        now: int | None = None,
    ) -> tuple[Released | None, Claim | None]:
        """Rules 7, 10 in one step: the holder lets go of ``held`` (same token, else
        SelectionLost) and claims the next candidate of ``hopper``. (None, None): nobody held
        it; a claim of None: the user holds something else (nothing claimed)."""
        keys, args = self._move_on_call(int(owner), held, hopper, mode, now)
        reply = await self._run(owner, self.scripts.move_on, keys, args)
        return _moved_from(reply, int(owner), held, hopper, mode)

    async def move_on_many(
        self,
        owner: int,
        moves: Sequence[tuple[Selection, HopperKey]],
        *,
        mode: WorkMode = WorkMode.LIST,
        now: int | None = None,
    ) -> list[tuple[Released | None, Claim | None] | SelectionLost]:
        """``move_on`` for many holders of one owner (each a different user), one after another
        in one step; each answered in order, its SelectionLost as its answer."""
        owner = int(owner)
        now = self.clock() if now is None else int(now)
        # What the agents' steps share goes once (move_on_many.lua): a batch is sent and
        # encoded in under half the keys and arguments of its move_on.lua calls.
        keys = [ready_key(owner), live_key(owner), fence_key(owner)]
        args: list[Any] = [
            len(moves),
            owner_prefix(owner),
            now,
            self.claim_scan_limit,
            WorkMode(mode).value,
        ]
        for held, hopper in moves:
            keys += (
                customer_key(owner, held.customer_id),
                user_key(owner, held.user_id),
                hopper.key(owner),
                hopper.segments_key(owner),
            )
            args += (
                int(held.customer_id),
                int(held.user_id),
                int(held.token),
                hopper.assignment_id,
            )
        replies = await self._run(owner, self.scripts.move_on_many, keys, args)
        answers: list[tuple[Released | None, Claim | None] | SelectionLost] = []
        for (held, hopper), reply in zip(moves, replies, strict=True):
            try:
                answers.append(_moved_from(reply, owner, held, hopper, mode))
            except SelectionLost as lost:
                answers.append(lost)
        return answers

    def _move_on_call(
        self, owner: int, held: Selection, hopper: HopperKey, mode: WorkMode, now: int | None
    ) -> tuple[list[str], list[Any]]:
        """move_on.lua's KEYS and ARGV: release.lua's, then claim_next.lua's."""
        release_keys, release_args = _release_call(
            owner, held.customer_id, held.user_id, held.token, False
        )
        claim_keys, claim_args = self._claim_call(owner, held.user_id, hopper, mode, now, None)
        return release_keys + claim_keys, release_args + claim_args

    async def settle(self, released: Released, selection: Selection | None) -> bool | None:
        """After ``released`` (and ``selection`` in its place) committed in the database: let go
        of ``released`` again if a rebuild put it back; whether ``selection`` is still held
        (False: no selection). None: the owner's locks are not loaded (nothing done)."""
        keys, args = _settle_call(released, selection)
        return _settled_from(await self.scripts.settle(keys=keys, args=args))

    async def settle_many(
        self, owner: int, settles: Sequence[tuple[Released, Selection | None]]
    ) -> list[bool | None]:
        """``settle`` for many releases of one owner that committed together, in one step."""
        keys = [live_key(owner), ready_key(owner)]
        args: list[Any] = [len(settles), owner_prefix(owner)]
        for released, selection in settles:
            keys.append(customer_key(owner, released.customer_id))
            args += (int(released.customer_id), int(released.user_id), int(released.token))
            if selection is None:
                keys.append(keys[0])  # any key of the owner: unread without a new selection
                args += ("", "")
            else:
                keys.append(customer_key(owner, selection.customer_id))
                args += (int(selection.user_id), int(selection.token))
        replies = await self.scripts.settle_many(keys=keys, args=args)
        return [_settled_from(reply) for reply in replies]

    async def release_user(self, owner: int, user_id: int) -> Released | None:
        """work.stop: end whatever selection the user holds. None: it held nothing."""
        reply = await self._run(
            owner,
            self.scripts.release_user,
            [user_key(owner, user_id), live_key(owner), ready_key(owner)],
            [owner_prefix(owner), int(user_id)],
        )
        if _text(reply[0]) == "NONE":
            return None
        return Released(
            owner=owner,
            customer_id=int(_text(reply[1])),
            user_id=int(user_id),
            token=int(_text(reply[2])),
            since=int(_text(reply[3])),
            by_user_id=int(user_id),
            assignment_id=_opt_id(reply[4]),
            segment_id=_opt_id(reply[5]),
        )

    # Reads ------------------------------------------------------------------------------------

    async def current(self, owner: int, user_id: int) -> Selection | None:
        """The selection the user holds (rule 9: where a reconnecting agent goes back to)."""
        raw = await self._run(
            owner,
            self.scripts.current,
            [user_key(owner, user_id), live_key(owner), ready_key(owner)],
            [],
        )
        return None if raw is None else _selection_from_row(owner, raw)

    async def holder(self, owner: int, customer_id: int) -> Selection | None:
        """Who holds the customer and since when (rule 6), or None. Raises StoreNotReady when
        the owner's locks are not loaded: "nobody" from an emptied Redis would be a lie."""
        raw = await self._run(
            owner,
            self.scripts.holder,
            [ready_key(owner), live_key(owner)],
            [int(customer_id)],
        )
        return None if raw is None else _selection_from_row(owner, raw)

    async def selected_among(self, owner: int, customer_ids: Iterable[int]) -> dict[int, int]:
        """customer id -> holder user id for those held: bulk operations skip them (rule 19)."""
        ids = [int(c) for c in customer_ids]
        if not ids:
            return {}
        rows = await self.redis.hmget(live_key(owner), [str(c) for c in ids])
        return {
            cid: int(json.loads(_text(raw))["user_id"])
            for cid, raw in zip(ids, rows, strict=True)
            if raw is not None
        }

    async def live_rows(self, owner: int) -> list[dict[str, Any]]:
        """The live list as stored (Selection.row: ids as ints, since in epoch ms), oldest
        first; the overview reads thousands at once, so no Selection is built per row."""
        raw = await self.redis.hgetall(live_key(owner))
        rows = [orjson.loads(value) for value in raw.values()]
        rows.sort(key=lambda row: (row["since"], row["customer_id"]))
        return rows

    async def snapshot(self, owner: int) -> list[Selection]:
        """The live Selected Customers list, oldest selection first."""
        rows = await self.redis.hgetall(live_key(owner))
        selections = [_selection_from_row(owner, raw) for raw in rows.values()]
        return sorted(selections, key=lambda s: (s.since, s.customer_id))

    async def check_token(self, owner: int, customer_id: int, user_id: int, token: int) -> bool:
        """Rule 8: may this screen still write? Only the holder with the live token."""
        held_by, live = await self.redis.hmget(customer_key(owner, customer_id), ["user", "token"])
        if held_by is None or live is None:
            return False
        return _text(held_by) == str(int(user_id)) and _text(live) == str(int(token))

    async def fence(self, owner: int) -> int:
        """The last fencing token handed out (0: none yet)."""
        value = await self.redis.get(fence_key(owner))
        return 0 if value is None else int(_text(value))

    async def is_ready(self, owner: int) -> bool:
        return bool(await self.redis.exists(ready_key(owner)))

    # Recovery ---------------------------------------------------------------------------------

    async def rebuild(
        self,
        owner: int,
        holders: Iterable[Holder | Sequence[Any]],
        min_fence: int,
        *,
        now: int | None = None,
    ) -> Rebuilt:
        """Load the owner's locks from the database's holders, unless already loaded; the fence
        becomes max(current, min_fence, every token). Concurrent rebuilders are harmless."""
        now = self.clock() if now is None else int(now)
        rows = []
        for entry in holders:
            h = entry if isinstance(entry, Holder) else Holder(*entry)
            rows.append(
                [
                    str(int(h.customer_id)),
                    str(int(h.user_id)),
                    str(int(h.token)),
                    str(int(h.since)),
                    _arg_id(h.assignment_id),
                    _arg_id(h.segment_id),
                    WorkMode(h.mode).value,
                ]
            )
        reply = await self._run(
            owner,
            self.scripts.rebuild,
            [ready_key(owner), live_key(owner), fence_key(owner)],
            [owner_prefix(owner), int(min_fence), now, json.dumps(rows, separators=(",", ":"))],
        )
        return Rebuilt(
            loaded=int(reply[1]),
            skipped=int(reply[2]),
            fence=int(_text(reply[3])),
            already_ready=_text(reply[0]) == "ALREADY_READY",
        )

    async def mark_ready(
        self, owner: int, min_fence: int = 0, *, now: int | None = None
    ) -> Rebuilt:
        """An owner with no holders in the database: just raise the fence and mark it ready."""
        return await self.rebuild(owner, [], min_fence, now=now)
