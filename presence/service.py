"""Selections with their durable copy: the Redis lock and the database record move together.

Redis decides who holds what (rule 4, atomic Lua); the database records every selection and
release with its history row (rule 24) and fences the holder's writes (rule 8, domain.db.fencing).
When Redis comes back empty, the owner's locks are rebuilt from the database before anything new
is handed out, and fencing tokens keep growing across the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import repositories as repo
from domain.errors import NotFound, SelectionLost
from domain.model import WorkMode
from presence.selections import (
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


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class SelectionService:
    """Select, claim-recording and release for every data owner, Redis and database together."""

    def __init__(self, engine: AsyncEngine, store: SelectionStore) -> None:
        self.engine = engine
        self.store = store
        self._rebuilding: dict[int, asyncio.Lock] = {}

    # Durability -------------------------------------------------------------------------------

    async def ensure_ready(self, owner: int) -> Rebuilt | None:
        """Load the owner's locks from the database if Redis lost them; None: they were there."""
        if await self.store.is_ready(owner):
            return None
        lock = self._rebuilding.setdefault(owner, asyncio.Lock())
        async with lock:
            if await self.store.is_ready(owner):
                return None
            async with self.engine.connect() as conn:
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
        self, owner: int, user_id: int, customer_id: int, *, mode: WorkMode = WorkMode.MANUAL
    ) -> Selection:
        """Select a customer by hand, recorded in the database with its history row."""
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
        self, selection: Selection, qualifies: ColumnElement[bool] | None = None
    ) -> bool:
        """Record a selection Redis made. False: the row refused it (``qualifies`` failed, or it
        was released meanwhile) or Redis no longer holds it; the caller drops it."""
        async with self.engine.connect() as conn:
            transaction = await conn.begin()
            try:
                recorded = await fencing.record_selected(
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
                )
                # Checked with the row locked: a Redis that lost this lock (FLUSHALL) before the
                # commit must not leave the database naming a holder Redis does not know.
                if recorded:
                    recorded = await self.store.check_token(
                        selection.owner, selection.customer_id, selection.user_id, selection.token
                    )
                if recorded:
                    await transaction.commit()
                else:
                    await transaction.rollback()
                return recorded
            except BaseException:
                await transaction.rollback()
                raise

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
        await self.ensure_ready(owner)
        held = await self.store.holder(owner, customer_id)
        if held is None:
            if token is not None:
                raise SelectionLost(customer_id)
            return None
        if token is not None and held.token != token:
            raise SelectionLost(customer_id, held.user_id)
        if not supervisor and held.user_id != by_user_id:
            raise NotHolder(customer_id, held.user_id, held.since)
        now = datetime.now(UTC)
        released: Released | None = None
        try:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    # Database first, row locked, then Redis, then commit: once Redis shows the
                    # customer free, no write of the old holder passes the fence (rule 8).
                    await fencing.record_released(
                        conn,
                        owner=owner,
                        customer_id=customer_id,
                        token=held.token,
                        by_user_id=by_user_id,
                        at=now,
                    )
                    released = await self.store.release(
                        owner, customer_id, by_user_id, token=held.token, supervisor=supervisor
                    )
                    if released is None:
                        await transaction.rollback()
                        return None
                    await fencing.add_released_history(
                        conn,
                        customer_id=customer_id,
                        user_id=released.user_id,
                        token=released.token,
                        by_user_id=by_user_id,
                        assignment_id=released.assignment_id,
                        at=now,
                    )
                    await transaction.commit()
                    return released
                except BaseException:
                    await transaction.rollback()
                    raise
        except Exception:
            if released is not None:
                # Redis let go but the commit failed: record the release again, or the database
                # would keep fencing writes in for a holder Redis no longer knows.
                await self._record_release_again(owner, released, by_user_id, now)
            raise

    async def _record_release_again(
        self, owner: int, released: Released, by_user_id: int, at: datetime
    ) -> None:
        for _ in range(NOT_READY_RETRIES):
            with contextlib.suppress(Exception):
                async with self.engine.begin() as conn:
                    await fencing.record_released(
                        conn,
                        owner=owner,
                        customer_id=released.customer_id,
                        token=released.token,
                        by_user_id=by_user_id,
                        at=at,
                    )
                    await fencing.add_released_history(
                        conn,
                        customer_id=released.customer_id,
                        user_id=released.user_id,
                        token=released.token,
                        by_user_id=by_user_id,
                        assignment_id=released.assignment_id,
                        at=at,
                    )
                return

    async def release_user(self, owner: int, user_id: int) -> Released | None:
        """Rule 7: the user stops work or moves on; ends whatever it holds. None: nothing."""
        for _ in range(NOT_READY_RETRIES * 2):
            await self.ensure_ready(owner)
            try:
                current = await self.store.current(owner, user_id)
                if current is None:
                    return None
                return await self.release(owner, current.customer_id, user_id, token=current.token)
            except (SelectionLost, StoreNotReady):
                continue  # ended meanwhile (a supervisor, a loss): look again
        return None

    async def current(self, owner: int, user_id: int) -> Selection | None:
        """Rule 9: the selection to put a reconnecting agent back into."""
        return await self.when_ready(owner, lambda: self.store.current(owner, user_id))
