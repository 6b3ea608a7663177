"""The dialer's customers from the database and Redis: claims, dialer lines, fenced attempts.

Every customer the dialer calls is *selected* first (rule 4), so the selection lock decides
who may dial it and no customer is dialed twice at once:

- preview and progressive: the agent's own claim of the next right customer (NextCustomer).
- predictive: a *dialer line* claims it. A line is a system user of the data owner (inactive,
  no usable password, named "Dialer line N"); like any user it holds at most one customer, so
  a line is one call. When the call is answered, the line's selection is handed to the agent
  (released, then selected by the agent): the customer screen the agent gets is the agent's
  own selection, and a busy or unanswered call is the line's fenced attempt.

Supervisors see lines in Selected Customers like agents: a customer being dialed is visibly
held, and releasing it there makes the line's attempt write fail the fence (rule 8).

Lines are shared by every node of the data owner, so a node *leases* each line it dials on
(a Redis key per line naming the node, ``LINE_LEASE_S``, taken again on every use): two nodes
never dial on one line, and a line whose node died is taken over once its lease ran out,
releasing the customer the dead node left it holding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.dial_modes import CallRecord, Target
from dialer.next_customer import NextCustomer
from dialer.work_loop import WorkList, work_list_key
from domain.db import dnc, fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import DomainError
from domain.model import AssignmentSetup, AttemptKind, Role, WorkMode
from presence.keys import owner_prefix
from presence.selections import Released, Selection

LINES_PER_OWNER = 300
"""Most calls one data owner's predictive lists have ringing or waiting at once."""
UNUSABLE_PASSWORD = "!dialer-line"  # never an Argon2 hash: no password logs a line in
LINE_LEASE_S = 60
"""A line's lease: longer than any call rings (the line lets go once it is answered)."""
MAX_LINE_TRIES = 20
"""Lines tried per claim before saying "every line is busy" (bounded per pacing step)."""

TAKE_LINE_LUA = """
-- take_line: lease a dialer line to one node, so two nodes never dial on the same line.
-- KEYS[1] dh:{o:N}:line:<line user id>   string: the node that leases the line
-- ARGV[1] node id, ARGV[2] lease ms
-- Returns 0: another node leases it; 1: this node's lease, renewed; 2: newly leased (the line
-- may still hold what a node that died left it: the caller releases that first).
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder then
  return 1
end
return 2
"""

OnSelected = Callable[[Selection], Awaitable[None]]
OnReleased = Callable[[Released], Awaitable[None]]


def line_username(owner: int, number: int) -> str:
    return f"dialer-line-{owner}-{number}"


def line_lease_key(owner: int, line: int) -> str:
    return f"{owner_prefix(owner)}line:{int(line)}"


@dataclass
class _Lines:
    all: list[int] = field(default_factory=list)
    mine: set[int] = field(default_factory=set)
    """Lines this node leases."""
    free: list[int] = field(default_factory=list)
    """Lines this node leases that hold no call now."""


class DatabaseCustomers:
    """``dial_modes.Customers`` on the selection service, the hopper and the fence."""

    def __init__(
        self,
        engine: AsyncEngine,
        next_customer: NextCustomer,
        *,
        lines_per_owner: int = LINES_PER_OWNER,
        node_id: str | None = None,
        on_selected: OnSelected | None = None,
        on_released: OnReleased | None = None,
    ) -> None:
        self.engine = engine
        self.next_customer = next_customer
        self.selections = next_customer.selections
        self.redis = self.selections.store.redis
        self.lines_per_owner = lines_per_owner
        self.node_id = node_id or secrets.token_hex(6)
        self.on_selected = on_selected
        """Told of every selection made here (the realtime layer tells supervisors)."""
        self.on_released = on_released
        self._lines: dict[int, _Lines] = {}
        self._making: dict[int, asyncio.Lock] = {}
        self._take_line = self.redis.register_script(TAKE_LINE_LUA)

    async def setup_of(self, owner: int, assignment_id: int) -> AssignmentSetup:
        assignment, _crm = await self.next_customer.list_of(owner, assignment_id)
        return assignment.setup

    # List work: the same key the work loop keeps (dialer.work_loop.work_list_key) ---------------

    async def enter_list_work(self, owner: int, agent_id: int, work: WorkList) -> None:
        value = {"assignment_id": work.assignment_id, "segment_ids": list(work.segment_ids)}
        await self.redis.set(work_list_key(owner, agent_id), json.dumps(value))

    async def in_list_work(self, owner: int, agent_id: int) -> bool:
        return bool(await self.redis.exists(work_list_key(owner, agent_id)))

    # Claims -------------------------------------------------------------------------------------

    async def claim_for_agent(self, owner: int, agent_id: int, work: WorkList) -> Target | None:
        selection = await self.next_customer.claim(
            owner, agent_id, work.assignment_id, work.segment_ids or None
        )
        if selection is None:
            return None
        await self._selected(selection)
        return _target(selection)

    async def claim_for_line(self, owner: int, work: WorkList) -> Target | None:
        lines = await self._owner_lines(owner)
        line = await self._lease_line(owner, lines)
        if line is None:
            return None
        try:
            selection = await self.next_customer.claim(
                owner, line, work.assignment_id, work.segment_ids or None
            )
        except BaseException:
            lines.free.append(line)
            raise
        if selection is None:
            lines.free.append(line)
            return None
        await self._selected(selection)
        return _target(selection)

    async def hand_over(self, target: Target, agent_id: int) -> Target | None:
        """The line's customer becomes the agent's selection, in one step (nobody can take it
        in between); None: the line lost it, or the agent holds a customer (the line lets go
        and the call is abandoned)."""
        held = Selection(
            owner=target.owner,
            customer_id=target.customer_id,
            user_id=target.holder_id,
            token=target.token,
            since=0,  # not read: the hand-over takes what Redis has
            assignment_id=target.assignment_id,
            segment_id=None,
            mode=WorkMode.LIST,
        )
        try:
            released, selection = await self.selections.hand_over(target.owner, held, agent_id)
        except DomainError:
            released, selection = None, None
            if not await self._release(target):  # the agent was busy: the line lets go
                return None
        else:
            self._line_free(target)
            if released is not None and self.on_released is not None:
                await self.on_released(released)
        if selection is None:
            return None
        await self._selected(selection)
        return _target(selection)

    # Writes -------------------------------------------------------------------------------------

    async def number_to_dial(self, target: Target) -> str | None:
        async with self.engine.connect() as conn:
            customer = await repo.get_customer(conn, target.owner, target.customer_id)
            if customer is None:
                return None
            return await dnc.first_callable(conn, target.owner, customer.phones)

    async def attempted(self, target: Target, at: datetime) -> None:
        """Rule 13 as the holder's fenced write (agent or line)."""
        async with self.engine.begin() as conn:
            await fencing.record_attempt(
                conn,
                fencing.Holding(target.customer_id, target.holder_id, target.token),
                AttemptKind.NO_ANSWER,
                at,
            )

    async def release(self, target: Target) -> bool:
        return await self._release(target)

    async def call_ended(self, record: CallRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(t.calls).values(
                    id=record.call_id,
                    data_owner_id=record.owner,
                    assignment_id=record.assignment_id,
                    customer_id=record.customer_id,
                    mode=record.mode.value,
                    number=record.number,
                    result=record.result,
                    agent_user_id=record.agent_id,
                    dialed_at=record.dialed_at,
                    answered_at=record.answered_at,
                    ended_at=record.ended_at,
                )
            )

    # Lines ------------------------------------------------------------------------------------

    async def _release(self, target: Target) -> bool:
        released = None
        with contextlib.suppress(DomainError):  # ended meanwhile: nothing left to release
            released = await self.selections.release(
                target.owner, target.customer_id, target.holder_id, token=target.token
            )
        self._line_free(target)
        if released is not None and self.on_released is not None:
            await self.on_released(released)
        return released is not None

    def _line_free(self, target: Target) -> None:
        """The line that held ``target`` may dial again."""
        lines = self._lines.get(target.owner)
        if (
            lines is not None
            and target.holder_id in lines.mine
            and target.holder_id not in lines.free
        ):
            lines.free.append(target.holder_id)

    async def _selected(self, selection: Selection) -> None:
        if self.on_selected is not None:
            await self.on_selected(selection)

    async def _lease_line(self, owner: int, lines: _Lines) -> int | None:
        """A line this node may dial on now: one of its own free ones (its lease taken again),
        else a line no live node leases; None: every line tried is busy."""
        lease_ms = LINE_LEASE_S * 1000
        for _ in range(MAX_LINE_TRIES):
            if lines.free:
                line = lines.free.pop()
            else:
                others = [n for n in lines.all if n not in lines.mine]
                if not others:
                    return None
                line = random.choice(others)
            took = int(
                await self._take_line(
                    keys=[line_lease_key(owner, line)], args=[self.node_id, lease_ms]
                )
            )
            if took == 0:
                lines.mine.discard(line)  # another node took it after this node's lease ran out
                continue
            lines.mine.add(line)
            if took == 2:
                # A line nobody leased: whatever it holds was left by a node that died.
                released = await self.selections.release_user(owner, line)
                if released is not None and self.on_released is not None:
                    await self.on_released(released)
            return line
        return None

    async def _owner_lines(self, owner: int) -> _Lines:
        """The owner's line users, made on first use (by whichever node comes first)."""
        lines = self._lines.get(owner)
        if lines is not None:
            return lines
        async with self._making.setdefault(owner, asyncio.Lock()):
            lines = self._lines.get(owner)
            if lines is not None:
                return lines
            try:
                ids = await self._make_lines(owner)
            except IntegrityError:
                ids = await self._make_lines(owner)  # another node made them at the same time
            lines = self._lines[owner] = _Lines(all=sorted(ids))
            return lines

    async def _make_lines(self, owner: int) -> list[int]:
        names = [line_username(owner, i) for i in range(1, self.lines_per_owner + 1)]
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                select(t.users.c.username, t.users.c.id).where(
                    t.users.c.data_owner_id == owner, t.users.c.username.in_(names)
                )
            )
            ids = dict(rows.all())
            for i, name in enumerate(names, start=1):
                if name not in ids:
                    user = await repo.create_user(
                        conn,
                        owner,
                        name,
                        f"Dialer line {i}",
                        Role.AGENT,
                        "",
                        password_hash=UNUSABLE_PASSWORD,
                    )
                    ids[name] = user.id
            await conn.execute(
                update(t.users).where(t.users.c.id.in_(list(ids.values()))).values(active=False)
            )
        return list(ids.values())


def _target(selection: Selection) -> Target:
    return Target(
        owner=selection.owner,
        customer_id=selection.customer_id,
        holder_id=selection.user_id,
        token=selection.token,
        assignment_id=int(selection.assignment_id or 0),
    )
