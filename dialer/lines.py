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
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.dial_modes import CallRecord, Target
from dialer.next_customer import NextCustomer
from dialer.work_loop import WorkList, work_list_key
from domain.db import dnc, fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import DomainError
from domain.model import AssignmentSetup, AttemptKind, Role, WorkMode
from presence.selections import Selection

LINES_PER_OWNER = 300
"""Most calls one data owner's predictive lists have ringing or waiting at once."""
UNUSABLE_PASSWORD = "!dialer-line"  # never an Argon2 hash: no password logs a line in


def line_username(owner: int, number: int) -> str:
    return f"dialer-line-{owner}-{number}"


@dataclass
class _Lines:
    free: list[int] = field(default_factory=list)
    all: set[int] = field(default_factory=set)


class DatabaseCustomers:
    """``dial_modes.Customers`` on the selection service, the hopper and the fence."""

    def __init__(
        self,
        engine: AsyncEngine,
        next_customer: NextCustomer,
        *,
        lines_per_owner: int = LINES_PER_OWNER,
    ) -> None:
        self.engine = engine
        self.next_customer = next_customer
        self.selections = next_customer.selections
        self.redis = self.selections.store.redis
        self.lines_per_owner = lines_per_owner
        self._lines: dict[int, _Lines] = {}

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
        return None if selection is None else _target(selection)

    async def claim_for_line(self, owner: int, work: WorkList) -> Target | None:
        lines = await self._owner_lines(owner)
        if not lines.free:
            return None
        line = lines.free.pop()
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
        return _target(selection)

    async def hand_over(self, target: Target, agent_id: int) -> Target | None:
        """The line's customer becomes the agent's selection; None: the line lost it."""
        released = await self._release(target)
        if not released:
            return None
        try:
            selection = await self.selections.select(
                target.owner, agent_id, target.customer_id, mode=WorkMode.LIST
            )
        except DomainError:
            return None  # taken in the gap (a manual select): the call is abandoned
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

    async def release(self, target: Target) -> None:
        await self._release(target)

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
        lines = self._lines.get(target.owner)
        if (
            lines is not None
            and target.holder_id in lines.all
            and target.holder_id not in lines.free
        ):
            lines.free.append(target.holder_id)
        return released is not None

    async def _owner_lines(self, owner: int) -> _Lines:
        """The owner's line users, made on first use. A line that still holds a customer (a
        node died mid-call) lets it go first: no call of its is running any more."""
        lines = self._lines.get(owner)
        if lines is not None:
            return lines
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
        lines = self._lines.setdefault(owner, _Lines())
        if not lines.all:
            for line in ids.values():
                await self.selections.release_user(owner, line)
            lines.all = set(ids.values())
            lines.free = sorted(lines.all, reverse=True)
        return lines


def _target(selection: Selection) -> Target:
    return Target(
        owner=selection.owner,
        customer_id=selection.customer_id,
        holder_id=selection.user_id,
        token=selection.token,
        assignment_id=int(selection.assignment_id or 0),
    )
