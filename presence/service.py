"""Selections with their durable copy: the Redis lock and the database record move together.

Redis decides who holds what (rule 4, atomic Lua); the database records every selection and
release with its history row (rule 24) and fences the holder's writes (rule 8, domain.db.fencing).
When Redis comes back empty, the owner's locks are rebuilt from the database before anything new
is handed out, and fencing tokens keep growing across the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import fencing
from domain.db import repositories as repo
from domain.db.engine import reads
from domain.db.fencing import OutcomeAsk, OutcomeResult
from domain.db.group_commit import GroupCommit, batches_at_once
from domain.db.outcomes import record_together, save_alone
from domain.errors import DomainError, NotFound, SelectionLost
from domain.model import Customer, WorkMode
from presence.keys import HopperKey
from presence.selections import (
    Claim,
    Holder,
    NotHolder,
    Rebuilt,
    Released,
    Selection,
    SelectionStore,
    StoreNotReady,
)

T = TypeVar("T")

FENCE_GAP = 1_000_000
"""After a loss, tokens restart this far past the database's high-water mark: a token the lost
Redis handed out whose recording was still in flight stays below every new one."""

NOT_READY_RETRIES = 3


MOVE_ON_BATCH = 64
"""Moves on per transaction and Redis step at most."""

MovedOn = tuple[Released | None, Claim | None, Selection | None]
"""What a move on did: the selection ended, the claim made, the selection recorded from it."""

SavedAndMovedOn = tuple[OutcomeResult | None, MovedOn | SelectionLost]
"""What a move on with an outcome did: the outcome saved (None: no outcome asked), then the
move on, or the SelectionLost it alone met after the outcome stood."""


@dataclass(frozen=True, slots=True)
class _MoveOn:
    """One move on waiting for its batch: ``SelectionService.move_on``'s arguments."""

    held: Selection
    hopper: HopperKey
    qualifies: ColumnElement[bool] | None
    qualifies_params: Mapping[str, Any] | None
    outcome: OutcomeAsk | None = None
    """The holder's outcome of ``held``, saved first in the same transaction (customer.save)."""


def _release_record(held: Selection, at: datetime) -> fencing.ReleaseRecord:
    """The holder ends ``held`` itself (rule 7)."""
    return fencing.ReleaseRecord(
        owner=held.owner,
        customer_id=held.customer_id,
        token=held.token,
        holder_user_id=held.user_id,
        by_user_id=held.user_id,
        assignment_id=held.assignment_id,
        at=at,
    )


def _selection_record(
    selection: Selection,
    qualifies: ColumnElement[bool] | None,
    qualifies_params: Mapping[str, Any] | None,
) -> fencing.SelectionRecord:
    return fencing.SelectionRecord(
        owner=selection.owner,
        customer_id=selection.customer_id,
        user_id=selection.user_id,
        token=selection.token,
        at=to_datetime(selection.since),
        assignment_id=selection.assignment_id,
        segment_id=selection.segment_id,
        mode=selection.mode,
        qualifies=qualifies,
        qualifies_params=qualifies_params,
    )


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class _Untouched(Exception):
    """A batch of moves on failed in the database before its Redis step: nothing of it stayed
    anywhere (``cause``: what failed), so each move may go again alone."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class SelectionService:
    """Select, claim-recording and release for every data owner, Redis and database together."""

    def __init__(self, engine: AsyncEngine, store: SelectionStore) -> None:
        self.engine = engine
        self._on_its_own = reads(engine)  # each statement its own transaction (PostgreSQL)
        self.store = store
        self._rebuilding: dict[int, asyncio.Lock] = {}
        self.move_ons: GroupCommit[_MoveOn, SavedAndMovedOn] = GroupCommit(
            self._move_on_many,
            key=lambda move: move.held.user_id,
            group=lambda move: move.held.owner,
            most=MOVE_ON_BATCH,
            concurrent=batches_at_once(engine),
        )
        self.records: GroupCommit[fencing.SelectionRecord, bool] = GroupCommit(
            self._record_many,
            key=lambda record: record.user_id,
            most=MOVE_ON_BATCH,
            concurrent=batches_at_once(engine),
        )

    # Durability -------------------------------------------------------------------------------

    async def ensure_ready(self, owner: int) -> Rebuilt | None:
        """Load the owner's locks from the database if Redis lost them; None: they were there."""
        if await self.store.is_ready(owner):
            return None
        lock = self._rebuilding.setdefault(owner, asyncio.Lock())
        async with lock:
            if await self.store.is_ready(owner):
                return None
            async with self.engine.begin() as conn:
                holders, high_water = await fencing.durable_holders(conn, owner)
            # rebuild.lua runs once per loss: another process that got there first wins.
            return await self.store.rebuild(
                owner,
                [
                    Holder(
                        customer_id=h.customer_id,
                        user_id=h.user_id,
                        token=h.token,
                        since=to_ms(h.selected_at),
                        assignment_id=h.assignment_id,
                        segment_id=h.segment_id,
                        mode=h.mode,
                    )
                    for h in holders
                ],
                high_water + FENCE_GAP,
            )

    async def when_ready(self, owner: int, call: Callable[[], Awaitable[T]]) -> T:
        """Run a store call; on StoreNotReady rebuild from the database and run it again."""
        for _ in range(NOT_READY_RETRIES):
            try:
                return await call()
            except StoreNotReady:
                await self.ensure_ready(owner)
        return await call()

    # Rules 4, 6, 9: select ------------------------------------------------------------------

    async def select(
        self,
        owner: int,
        user_id: int,
        customer_id: int,
        *,
        mode: WorkMode = WorkMode.MANUAL,
        customer: Customer | None = None,
    ) -> Selection:
        """Select a customer by hand, recorded in the database with its history row.
        ``customer``: the row as the caller just read it (its list and segment), if it did."""
        if customer is None or customer.id != customer_id:
            async with self.engine.connect() as conn:
                customer = await repo.get_customer(conn, owner, customer_id)
        if customer is None:
            raise NotFound("no such customer")
        selection = await self.when_ready(
            owner,
            lambda: self.store.select(
                owner,
                user_id,
                customer_id,
                assignment_id=customer.assignment_id,
                segment_id=customer.segment_id,
                mode=mode,
            ),
        )
        if selection.resumed:
            return selection  # rule 9: recorded when it was made
        if not await self.record(selection):
            await self.drop(selection)
            raise SelectionLost(customer_id)
        return selection

    async def record(
        self,
        selection: Selection,
        qualifies: ColumnElement[bool] | None = None,
        qualifies_params: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a selection Redis made. False: the row refused it (``qualifies`` failed, or it
        was released meanwhile) or Redis no longer holds it; the caller drops it.
        ``qualifies_params``: values of bind parameters ``qualifies`` names, if any."""
        if fencing.selection_recorded_in_one_statement(self.engine):
            # Atomic on its own: no BEGIN and COMMIT around it, and the records of the claims
            # and selects of the same moment go together (a shift starting: one round trip
            # for many agents, not a connection each).
            record = _selection_record(selection, qualifies, qualifies_params)
            recorded = await self.records.submit(record)
        else:
            async with self.engine.begin() as conn:
                recorded = await self._record_in(conn, selection, qualifies, qualifies_params)
        return recorded and await self._confirm(selection)

    async def _record_many(self, records: list[fencing.SelectionRecord]) -> list[bool | Exception]:
        """Selections' records, one user each, pipelined on one connection without BEGIN and
        COMMIT (PostgreSQL, ``record``). Refused by the database as a whole, they go again
        one by one, so only the one at fault fails."""
        try:
            async with self._on_its_own.connect() as conn:
                return list(await fencing.record_selections(conn, records))
        except Exception:
            if len(records) == 1:
                raise
        answers: list[bool | Exception] = []
        for record in records:
            try:
                async with self._on_its_own.connect() as conn:
                    answers.extend(await fencing.record_selections(conn, [record]))
            except Exception as failed:  # that record's own answer
                answers.append(failed)
        return answers

    async def _record_in(
        self,
        conn: AsyncConnection,
        selection: Selection,
        qualifies: ColumnElement[bool] | None,
        qualifies_params: Mapping[str, Any] | None,
    ) -> bool:
        return await fencing.record_selected(
            conn,
            owner=selection.owner,
            customer_id=selection.customer_id,
            user_id=selection.user_id,
            token=selection.token,
            at=to_datetime(selection.since),
            assignment_id=selection.assignment_id,
            segment_id=selection.segment_id,
            mode=selection.mode,
            qualifies=qualifies,
            qualifies_params=qualifies_params,
        )

    async def _still_held(self, selection: Selection) -> bool:
        return await self.store.check_token(
            selection.owner, selection.customer_id, selection.user_id, selection.token
        )

    async def _confirm(self, selection: Selection, held: bool | None = None) -> bool:
        """After a selection's record committed: does Redis still hold it? A loss of Redis
        whose rebuild read the database just before that commit left it out (a row lock does
        not stop that read). Then the record is undone, so the database never fences writes in
        for a holder Redis does not know (rule 8). False: undone, the caller drops it.
        ``held``: the answer of a look already taken (``store.settle``), if any."""
        owner = selection.owner
        if held:
            return True
        for _ in range(NOT_READY_RETRIES):
            if await self._still_held(selection):
                return True
            if await self.store.is_ready(owner):
                break  # loaded, and without it (or released meanwhile): undo
            await self.ensure_ready(owner)  # lost and not loaded yet: the load sees the record
        else:
            if await self._still_held(selection):
                return True
        async with self.engine.begin() as conn:
            former = await fencing.record_released(
                conn,
                owner=owner,
                customer_id=selection.customer_id,
                token=selection.token,
                by_user_id=selection.user_id,
                at=datetime.now(UTC),
            )
            if former == selection.user_id:  # not ended by somebody else meanwhile
                await fencing.add_released_history(
                    conn,
                    customer_id=selection.customer_id,
                    user_id=selection.user_id,
                    token=selection.token,
                    by_user_id=selection.user_id,
                    assignment_id=selection.assignment_id,
                    at=datetime.now(UTC),
                )
        return False

    async def _settle_release(
        self, released: Released, selection: Selection | None = None
    ) -> bool | None:
        """After a release (and ``selection`` made in its place) committed: a loss of Redis
        whose rebuild read the database just before that commit put the lock back. Let go of it
        again, or the customer would stay out of play with no holder in the database. Returns
        whether ``selection`` is still held (None: not known, the locks were not loaded)."""
        with contextlib.suppress(RedisError, OSError):  # Redis away: its next rebuild settles it
            return await self.store.settle(released, selection)
        return None

    async def drop(self, selection: Selection) -> None:
        """Undo a selection in Redis that the database refused (never recorded: no history)."""
        with contextlib.suppress(SelectionLost):  # already gone
            await self.store.release(
                selection.owner, selection.customer_id, selection.user_id, token=selection.token
            )

    # Rule 7: release ----------------------------------------------------------------------

    async def release(
        self,
        owner: int,
        customer_id: int,
        by_user_id: int,
        *,
        token: int | None = None,
        supervisor: bool = False,
    ) -> Released | None:
        """End a selection in the database and in Redis, with a 'released' history row naming
        who released it. None: nobody held it."""
        for _ in range(NOT_READY_RETRIES):
            try:
                return await self._release(
                    owner, customer_id, by_user_id, token=token, supervisor=supervisor
                )
            except StoreNotReady:
                await self.ensure_ready(owner)  # Redis lost its data meanwhile: load, go again
        return await self._release(
            owner, customer_id, by_user_id, token=token, supervisor=supervisor
        )

    async def _release(
        self,
        owner: int,
        customer_id: int,
        by_user_id: int,
        *,
        token: int | None,
        supervisor: bool,
    ) -> Released | None:
        held = await self.store.holder(owner, customer_id)  # NOT_READY: release() loads
        if held is None:
            if token is not None:
                raise SelectionLost(customer_id)
            return None
        if token is not None and held.token != token:
            raise SelectionLost(customer_id, held.user_id)
        if not supervisor and held.user_id != by_user_id:
            raise NotHolder(customer_id, held.user_id, held.since)
        return await self._release_held(owner, held, by_user_id, supervisor=supervisor)

    async def _release_held(
        self, owner: int, held: Selection, by_user_id: int, *, supervisor: bool
    ) -> Released | None:
        """End the selection ``held`` (as Redis showed it a moment ago): recorded with its
        history row, then let go in Redis, then committed. None: nobody held it any more."""
        released, _none = await self._release_and_record(
            held,
            functools.partial(self._release_only, held, by_user_id, supervisor),
            None,
            None,
            by_user_id=by_user_id,
        )
        return released

    async def _release_only(
        self, held: Selection, by_user_id: int, supervisor: bool
    ) -> tuple[Released | None, None]:
        released = await self.store.release(
            held.owner, held.customer_id, by_user_id, token=held.token, supervisor=supervisor
        )
        return released, None

    async def _record_release_again(
        self, owner: int, released: Released, by_user_id: int, at: datetime
    ) -> None:
        for _ in range(NOT_READY_RETRIES):
            try:
                async with self.engine.begin() as conn:
                    await fencing.record_release(
                        conn,
                        owner=owner,
                        customer_id=released.customer_id,
                        token=released.token,
                        holder_user_id=released.user_id,
                        by_user_id=by_user_id,
                        assignment_id=released.assignment_id,
                        at=at,
                    )
                return
            except Exception:  # the database is briefly away: go again, a little later
                await asyncio.sleep(0.05)

    async def _look(self, owner: int, user_id: int) -> tuple[bool, Selection | None]:
        """(True, what the user holds now); (False, None) when Redis had lost its data: the
        owner's locks are loaded now, so the caller looks again."""
        try:
            return True, await self.store.current(owner, user_id)
        except StoreNotReady:
            await self.ensure_ready(owner)
            return False, None

    async def release_user(self, owner: int, user_id: int) -> Released | None:
        """Rule 7: the user stops work or moves on; ends whatever it holds. None: nothing."""
        for _ in range(NOT_READY_RETRIES * 2):
            loaded, current = await self._look(owner, user_id)
            if not loaded:
                continue
            if current is None:
                return None
            try:
                # The selection just read is the one to end: no second look-up of its holder.
                return await self._release_held(owner, current, user_id, supervisor=False)
            except (SelectionLost, StoreNotReady):
                continue  # ended meanwhile (a supervisor, a loss): look again
        return None

    async def move_on(
        self,
        owner: int,
        user_id: int,
        hopper: HopperKey,
        *,
        expected: Selection | None = None,
        qualifies: ColumnElement[bool] | None = None,
        qualifies_params: Mapping[str, Any] | None = None,
    ) -> tuple[Released | None, Claim | None, Selection | None]:
        """Rule 7 then rule 10 in one transaction: end what the user holds (``expected``: that
        selection, same token, or SelectionLost) and record the next candidate of ``hopper``,
        claimed in the same Redis step, in its place. Returns (released, the claim, the
        selection recorded); none recorded: the claim found nobody or the record refused it
        (dropped again), so the caller claims on the usual way. Agents moving on at the same
        moment share the transaction and the Redis step (a group commit, ``_move_on_many``)."""
        for _ in range(NOT_READY_RETRIES * 2):
            current = expected
            if current is None:
                loaded, current = await self._look(owner, user_id)
                if not loaded:
                    continue
                if current is None:
                    return None, None, None
            try:
                _none, moved = await self.move_ons.submit(
                    _MoveOn(current, hopper, qualifies, qualifies_params)
                )
            except StoreNotReady:
                await self.ensure_ready(owner)  # lost meanwhile: load, go again
                continue
            except SelectionLost:
                if expected is not None:
                    raise
                continue  # ended meanwhile (a supervisor): look again
            if isinstance(moved, SelectionLost):
                raise moved  # (a move without an outcome has it raised by the submit)
            return moved
        return None, None, None

    async def save_and_move_on(
        self,
        held: Selection,
        hopper: HopperKey,
        outcome: OutcomeAsk,
        *,
        qualifies: ColumnElement[bool] | None = None,
        qualifies_params: Mapping[str, Any] | None = None,
    ) -> SavedAndMovedOn:
        """customer.save going on to the next from the list: the holder's ``outcome`` of
        ``held`` (rules 15, 18, 23), then ``move_on`` from it (``expected``: ``held``), in one
        transaction, shared with the agents saving or moving on at this moment. A refused
        outcome (SelectionLost, InvalidTransition, ...) raises and nothing moved on. Once the
        outcome stands, the move on's own SelectionLost is its answer (second), not raised."""
        for _ in range(NOT_READY_RETRIES * 2):
            try:
                return await self.move_ons.submit(
                    _MoveOn(held, hopper, qualifies, qualifies_params, outcome)
                )
            except StoreNotReady:
                await self.ensure_ready(held.owner)  # lost before the commit: all rolled back
        raise StoreNotReady(held.owner)

    async def _move_on_many(self, moves: list[_MoveOn]) -> list[SavedAndMovedOn | Exception]:
        """A batch of moves on (one data owner, one per user): on PostgreSQL in one
        transaction and one Redis step for all; elsewhere one after another."""
        if self.engine.dialect.name == "postgresql":
            try:
                return await self._move_on_together(moves)
            except StoreNotReady:
                raise  # nothing stayed: every caller loads and goes again
            except _Untouched as failed:
                if len(moves) == 1:
                    raise failed.cause from None
                # The database refused the batch before Redis moved: nothing of it stayed,
                # so each goes again alone and only the one at fault fails.
        answers: list[SavedAndMovedOn | Exception] = []
        for move in moves:
            try:
                answers.append(await self._move_on_alone(move))
            except Exception as refused:  # that move's own answer
                answers.append(refused)
        return answers

    async def _move_on_alone(self, move: _MoveOn) -> SavedAndMovedOn:
        saved = None
        if move.outcome is not None:
            answer = await save_alone(self.engine, move.outcome)
            if isinstance(answer, Exception):
                raise answer
            saved = answer
        try:
            return saved, await self._move_alone(move)
        except SelectionLost as lost:
            if saved is None:
                raise
            return saved, lost

    async def _move_alone(self, move: _MoveOn) -> MovedOn:
        claims: list[Claim] = []  # what the Redis step claimed, for the caller's refill
        released, selection = await self._release_and_record(
            move.held,
            functools.partial(self._release_and_claim, move.held, move.hopper, claims),
            move.qualifies,
            move.qualifies_params,
        )
        return released, claims[0] if claims else None, selection

    async def _move_on_together(self, moves: list[_MoveOn]) -> list[SavedAndMovedOn | Exception]:
        """``_release_and_record`` for many moves on at once, in the same order of steps: the
        outcomes asked saved (their fences lock their rows) and the other held rows locked (in
        customer order), then one Redis step (``move_on_many.lua``), then each release and the
        selection in its place recorded (one statement a move, pipelined), then the commit,
        then one look at Redis for all (``settle_many.lua``). A move whose outcome was
        refused, or whose selection was not live, answers that refusal and writes nothing; the
        others go on. Raises _Untouched when the database failed before the Redis step
        (nothing of the batch stayed)."""
        owner = moves[0].held.owner
        now = datetime.now(UTC)
        answers: list[SavedAndMovedOn | Exception | None] = [None] * len(moves)
        saved: dict[int, OutcomeResult] = {}
        done: list[tuple[int, Released, Claim | None]] = []  # what Redis did, once it did
        touched = False
        try:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    await self._save_outcomes(conn, moves, answers, saved)
                    await fencing.lock_customers(
                        conn, owner, [m.held.customer_id for m in moves if m.outcome is None]
                    )
                    going = [i for i, answer in enumerate(answers) if answer is None]
                    touched = True
                    steps = await self.store.move_on_many(
                        owner, [(moves[i].held, moves[i].hopper) for i in going]
                    )
                    for i, step in zip(going, steps, strict=True):
                        if isinstance(step, SelectionLost):
                            answers[i] = (saved[i], step) if i in saved else step
                        elif step[0] is None:
                            # Nobody held it: nothing written.
                            answers[i] = (saved.get(i), (None, None, None))
                        else:
                            done.append((i, step[0], step[1]))
                    recorded = await fencing.record_moves_on(
                        conn,
                        [
                            (
                                _release_record(moves[i].held, now),
                                None
                                if claim is None or claim.selection is None
                                else _selection_record(
                                    claim.selection, moves[i].qualifies, moves[i].qualifies_params
                                ),
                            )
                            for i, _released, claim in done
                        ],
                    )
                    await transaction.commit()
                except BaseException:
                    await transaction.rollback()
                    raise
        except Exception as failed:
            if not touched:
                raise _Untouched(failed) from failed
            for i, released, claim in done:
                outcome = moves[i].outcome
                if outcome is not None:
                    # Rolled back with the rest while Redis let go: the holder's outcome is
                    # saved again on its own before the release is recorded (or it is lost).
                    await save_alone(self.engine, outcome)
                await self._undo_uncommitted(
                    released, moves[i].held.user_id, now, claim and claim.selection
                )
            raise
        stands = {i for (i, _released, _claim), ok in zip(done, recorded, strict=True) if ok}
        held_now = await self._settle_many(
            owner,
            [
                (released, claim.selection if i in stands and claim is not None else None)
                for i, released, claim in done
            ],
        )
        for (i, released, claim), held in zip(done, held_now, strict=True):
            selection = None if claim is None else claim.selection
            kept = await self._kept(selection, i in stands, held)
            answers[i] = (saved.get(i), (released, claim, kept))
        return [answer for answer in answers if answer is not None]

    async def _save_outcomes(
        self,
        conn: AsyncConnection,
        moves: list[_MoveOn],
        answers: list[SavedAndMovedOn | Exception | None],
        saved: dict[int, OutcomeResult],
    ) -> None:
        """The outcomes a batch's moves ask, saved in its transaction: each one saved goes in
        ``saved``; a refused one is its move's answer (it does not move on)."""
        asking = [(i, move.outcome) for i, move in enumerate(moves) if move.outcome is not None]
        if not asking:
            return
        results = await record_together(conn, [ask for _i, ask in asking])
        for (i, _ask), result in zip(asking, results, strict=True):
            if isinstance(result, DomainError):
                answers[i] = result
            else:
                saved[i] = result

    async def _release_and_claim(
        self, held: Selection, hopper: HopperKey, claims: list[Claim]
    ) -> tuple[Released | None, Selection | None]:
        released, made = await self.store.move_on(held.owner, held, hopper)
        if made is not None:
            claims.append(made)
        return released, None if made is None else made.selection

    async def _settle_many(
        self, owner: int, settles: list[tuple[Released, Selection | None]]
    ) -> list[bool | None]:
        """``_settle_release`` for many releases of one owner that committed together."""
        if not settles:
            return []
        with contextlib.suppress(RedisError, OSError):  # Redis away: its next rebuild settles it
            return await self.store.settle_many(owner, settles)
        return [None] * len(settles)

    async def hand_over(
        self, owner: int, held: Selection, to_user_id: int
    ) -> tuple[Released | None, Selection | None]:
        """Predictive dialing: a dialer line's selection ``held`` passes to an agent, in one
        Redis step (nobody can take the customer in between) and one transaction. Returns
        (the line's selection ended, the agent's recorded); (None, None): the line no longer
        held it. UserHasSelection: the agent holds a customer already (nothing changed)."""
        for _ in range(NOT_READY_RETRIES):
            try:
                return await self._release_and_record(
                    held, lambda: self.store.hand_over(owner, held, to_user_id), None, None
                )
            except StoreNotReady:
                await self.ensure_ready(owner)  # Redis lost its data: load, go again
        return None, None

    async def _release_and_record(
        self,
        held: Selection,
        step: Callable[[], Awaitable[tuple[Released | None, Selection | None]]],
        qualifies: ColumnElement[bool] | None,
        qualifies_params: Mapping[str, Any] | None,
        *,
        by_user_id: int | None = None,
    ) -> tuple[Released | None, Selection | None]:
        """End ``held`` (released by ``by_user_id``, default its holder) and record the
        selection ``step`` makes in Redis in its place, if any, in one transaction. Database
        first, row locked, then Redis, then commit: once Redis shows the customer free, no
        write of the old holder passes the fence (rule 8). The history row names the holder
        Redis showed: ``step`` lets go only of that very selection (same token), or the
        transaction rolls back. Returns (released, the selection recorded); (None, None):
        ``held`` was not held any more (nothing written); a selection refused or undone is
        dropped again (returned as None)."""
        owner, customer_id = held.owner, held.customer_id
        by = held.user_id if by_user_id is None else by_user_id
        now = datetime.now(UTC)
        released: Released | None = None
        selection: Selection | None = None
        recorded = False
        try:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    await fencing.record_release(
                        conn,
                        owner=owner,
                        customer_id=customer_id,
                        token=held.token,
                        holder_user_id=held.user_id,
                        by_user_id=by,
                        assignment_id=held.assignment_id,
                        at=now,
                    )
                    released, selection = await step()
                    if released is None:
                        await transaction.rollback()
                        return None, None
                    if selection is not None:
                        # The record as in record(): confirmed in Redis after the commit.
                        recorded = await self._record_in(
                            conn, selection, qualifies, qualifies_params
                        )
                    await transaction.commit()
                except BaseException:
                    await transaction.rollback()
                    raise
        except Exception:
            if released is not None:
                await self._undo_uncommitted(released, by, now, selection)
            elif selection is not None:
                await self.drop(selection)
            raise
        assert released is not None
        held_now = await self._settle_release(released, selection if recorded else None)
        return released, await self._kept(selection, recorded, held_now)

    async def _undo_uncommitted(
        self, released: Released, by_user_id: int, at: datetime, selection: Selection | None
    ) -> None:
        """Redis let go of ``released`` (and made ``selection``) but the commit failed: record
        the release again, or the database would keep fencing writes in for a holder Redis no
        longer knows; let go of the selection, which the database never recorded."""
        await self._record_release_again(released.owner, released, by_user_id, at)
        if selection is not None:
            await self.drop(selection)

    async def _kept(
        self, selection: Selection | None, recorded: bool, held_now: bool | None
    ) -> Selection | None:
        """After the commit: the selection made in place of a release, if it stands (recorded,
        and still held in Redis); else it is let go (refused: a stale candidate; or undone)."""
        if selection is None:
            return None
        if recorded:
            recorded = await self._confirm(selection, held_now)
        if not recorded:
            await self.drop(selection)
        return selection if recorded else None

    async def current(self, owner: int, user_id: int) -> Selection | None:
        """Rule 9: the selection to put a reconnecting agent back into."""
        return await self.when_ready(owner, lambda: self.store.current(owner, user_id))
