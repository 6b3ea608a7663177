"""Next right customer (rules 7, 10-12): claim from the hopper, record it, refill on the way.

A claim pops the first free candidate in Redis, then records it in the database with a
conditional UPDATE: the row must still be an unselected, listable customer of the list. A
candidate worked meanwhile (a stale hopper entry) is released again and the next one claimed.
Every loop here is bounded.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.hopper import Hopper, in_list_bound, in_list_params
from domain.db import repositories as repo
from domain.db.fencing import OutcomeAsk, OutcomeResult
from domain.errors import NotFound, SelectionLost
from domain.model import Assignment, Crm, WorkMode
from presence.keys import HopperKey
from presence.selections import Released, Selection, StoreNotReady
from presence.service import MovedOn, SelectionService

MAX_TRIES = 50
"""Claims, refills and waits for another process's refill, per hand-out: bounded."""

LOCK_WAIT_S = 0.01


class NextCustomer:
    """Hands out the next right customer of a list, recorded in the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        selections: SelectionService,
        hopper: Hopper | None = None,
        *,
        max_tries: int = MAX_TRIES,
    ) -> None:
        self.engine = engine
        self.selections = selections
        self.store = selections.store
        self.hopper = hopper or Hopper(engine, selections.store)
        self.max_tries = max_tries
        self._lists: dict[tuple[int, int], tuple[Assignment, Crm | None]] = {}
        self._in_list: dict[
            tuple[int, frozenset[int] | None], tuple[Assignment, ColumnElement[bool]]
        ] = {}

    async def list_of(self, owner: int, assignment_id: int) -> tuple[Assignment, Crm | None]:
        """The assignment (setup, segments) and its CRM, read once per process."""
        cached = self._lists.get((owner, assignment_id))
        if cached is None:
            async with self.engine.connect() as conn:
                assignment = await repo.get_assignment(conn, assignment_id, data_owner_id=owner)
                if assignment is None:
                    raise NotFound("no such assignment")  # rule 3: also another owner's
                crm = await repo.get_crm(conn, assignment.crm_id, data_owner_id=owner)
            cached = self._lists[(owner, assignment_id)] = (assignment, crm)
        return cached

    async def note_due(
        self, owner: int, assignment_id: int, customer_id: int, at: datetime
    ) -> None:
        """A shared follow-up was made: its customer goes first in the list once it is due."""
        await self.hopper.note_due(owner, assignment_id, customer_id, at)

    def forget(self, owner: int, assignment_id: int) -> None:
        """The setup changed: read it again on the next claim."""
        self._lists.pop((owner, assignment_id), None)

    def _qualifies(self, assignment: Assignment, hopper: HopperKey) -> ColumnElement[bool]:
        """Rule 10 as the claim's record checks it, built once per list and setup as loaded
        (a reused expression spares building the record's statement on every claim)."""
        key = (assignment.id, hopper.segment_ids)
        cached = self._in_list.get(key)
        if cached is None or cached[0] is not assignment:
            cached = self._in_list[key] = (
                assignment,
                in_list_bound(assignment, hopper.segment_ids),
            )
        return cached[1]

    async def next(
        self,
        owner: int,
        user_id: int,
        assignment_id: int,
        segment_ids: Collection[int] | None = None,
    ) -> Selection | None:
        """Rule 7 then rule 10: end what the user holds, then hand it the next right customer."""
        _released, selection = await self.move_on(owner, user_id, assignment_id, segment_ids)
        return selection

    async def move_on(
        self,
        owner: int,
        user_id: int,
        assignment_id: int,
        segment_ids: Collection[int] | None = None,
        *,
        expected: Selection | None = None,
    ) -> tuple[Released | None, Selection | None]:
        """``next``, also saying what it ended; ``expected``: the selection to end (else
        SelectionLost). The release and the first claim share one transaction."""
        assignment, crm, hopper = await self._ready_to_claim(owner, assignment_id, segment_ids)
        moved = await self.selections.move_on(
            owner,
            user_id,
            hopper,
            expected=expected,
            qualifies=self._qualifies(assignment, hopper),
            qualifies_params=in_list_params(assignment, self.hopper.clock()),
        )
        return await self._moved(owner, user_id, assignment, crm, hopper, segment_ids, moved)

    async def save_and_move_on(
        self,
        held: Selection,
        outcome: OutcomeAsk,
        assignment_id: int,
        segment_ids: Collection[int] | None = None,
    ) -> tuple[OutcomeResult, tuple[Released | None, Selection | None] | SelectionLost]:
        """customer.save going on to the next of the list: the holder's outcome of ``held``,
        its release and the first claim in one transaction. A refused outcome raises (nothing
        moved on); once it stands, the move on's own SelectionLost comes back beside it."""
        owner = held.owner
        assignment, crm, hopper = await self._ready_to_claim(owner, assignment_id, segment_ids)
        saved, moved = await self.selections.save_and_move_on(
            held,
            hopper,
            outcome,
            qualifies=self._qualifies(assignment, hopper),
            qualifies_params=in_list_params(assignment, self.hopper.clock()),
        )
        assert saved is not None  # an outcome was asked
        if isinstance(moved, SelectionLost):
            return saved, moved
        return saved, await self._moved(
            owner, held.user_id, assignment, crm, hopper, segment_ids, moved
        )

    async def _ready_to_claim(
        self, owner: int, assignment_id: int, segment_ids: Collection[int] | None
    ) -> tuple[Assignment, Crm | None, HopperKey]:
        """The list and its hopper, due shared follow-ups put first (rule 11)."""
        assignment, crm = await self.list_of(owner, assignment_id)
        hopper = HopperKey.of(assignment_id, segment_ids)
        await self.hopper.put_due_first(owner, assignment, crm, hopper)
        return assignment, crm, hopper

    async def _moved(
        self,
        owner: int,
        user_id: int,
        assignment: Assignment,
        crm: Crm | None,
        hopper: HopperKey,
        segment_ids: Collection[int] | None,
        moved: MovedOn,
    ) -> tuple[Released | None, Selection | None]:
        """After a move on's release and claim: refill the hopper when it runs low; claim on
        the usual way when the move on recorded nobody."""
        released, made, selection = moved
        if (
            made is not None
            and made.selection is not None
            and self.hopper.low_on(owner, hopper, made.remaining)
        ):
            self.hopper.refill_soon(owner, assignment, crm, hopper)
        if selection is None:
            selection = await self.claim(owner, user_id, assignment.id, segment_ids)
        return released, selection

    async def claim(
        self,
        owner: int,
        user_id: int,
        assignment_id: int,
        segment_ids: Collection[int] | None = None,
    ) -> Selection | None:
        """The next right customer for a user holding nothing; None: nobody is free now."""
        assignment, crm = await self.list_of(owner, assignment_id)
        hopper = HopperKey.of(assignment_id, segment_ids)
        await self.hopper.put_due_first(owner, assignment, crm, hopper)
        for _ in range(self.max_tries):
            try:
                claim = await self.store.claim_next(owner, user_id, hopper, mode=WorkMode.LIST)
            except StoreNotReady:
                await self.selections.ensure_ready(owner)
                continue
            selection = claim.selection
            if selection is None:
                if claim.remaining > 0:
                    continue  # the scan limit stopped it among held candidates: go on
                result = await self.hopper.refill(owner, assignment, crm, hopper)
                if result.refilled is None:
                    # Another process is refilling this hopper: wait for it, not the database.
                    await asyncio.sleep(LOCK_WAIT_S * (1 + random.random()))
                elif result.refilled.length == 0:
                    return None
                continue
            if self.hopper.low_on(owner, hopper, claim.remaining):
                self.hopper.refill_soon(owner, assignment, crm, hopper)
            qualifies = self._qualifies(assignment, hopper)
            now = in_list_params(assignment, self.hopper.clock())
            if await self.selections.record(selection, qualifies, now):
                return selection
            # A stale candidate (worked or selected meanwhile): let it go, take the next.
            await self.selections.drop(selection)
        return None
