"""The node's hub: fan-out of every user's events through one Redis pub/sub connection.

Each user has one channel (presence.agents.channel, carrying the owner hash tag). A node
subscribes to the channel of every user it serves at least one connection of, and hands each
published frame to all of that user's local connections; so an event reaches every tab of the
user on every node, whichever node caused it. Events for the owner's watching supervisors come
once per event on the owner's watchers channel, which a node subscribes to while it serves a
supervisor of that owner; the node builds each local watcher's frame from it. The hub also
renews the presence leases and supervisor watches of its connections, sweeps run-out leases
(every node does; the script makes that safe), and on shutdown closes every connection with
1012 and a jittered retry hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from presence.agents import WATCHERS_CHANNEL, channel, epoch_ms, event_frame, watchers_channel
from realtime import metrics
from realtime.connection import Connection
from realtime.protocol import CLOSE_RESTART
from realtime.services import Services

log = logging.getLogger(__name__)

RENEW_BATCH = 1000
MAX_SWEEPS_PER_OWNER = 10
RECONNECT_DELAY_S = (0.1, 2.0)
DRAIN_TIMEOUT_S = 3.0


class Hub:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.node_id = secrets.token_hex(6)
        self.pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
        self.local: dict[str, set[Connection]] = {}
        """user channel -> this node's connections of the user."""
        self.supervisors: dict[str, set[Connection]] = {}
        """owner's watchers channel -> this node's supervisor connections of the owner."""
        self.connections: set[Connection] = set()
        self.draining = False
        self.emptied = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self._followed: set[str] = set()
        """Channels this node's pub/sub connection is subscribed to for its connections."""
        self._following = asyncio.Lock()
        self.on_revoked: list[Callable[[int, int, dict[str, Any]], Awaitable[None]]] = []
        """Told (owner, user id, event data) when a user served here loses its selection."""
        self._told: set[asyncio.Task[None]] = set()
        timeout = services.settings.presence_timeout_seconds
        self.renew_every = max(0.2, timeout / 3)
        self.sweep_every = max(0.2, min(timeout / 4, 5.0))

    # Lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loops; a Redis that is down does not stop the node (see /readyz)."""
        self.tasks = [
            asyncio.create_task(self._listen(), name="hub-listen"),
            asyncio.create_task(self._renew_loop(), name="hub-renew"),
            asyncio.create_task(self._sweep_loop(), name="hub-sweep"),
        ]

    async def stop(self) -> None:
        await self.drain()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Bounded: closing a pub/sub connection whose read was just cancelled can wait on that
        # read's lock; a stopping node must stop anyway.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.pubsub.aclose()

    def restart_close(self) -> tuple[int, str]:
        """1012 with a jittered hint, so a fleet of clients does not reconnect in one burst."""
        low, high = self.services.settings.shutdown_retry_ms
        retry = random.randint(min(low, high), max(low, high))
        return CLOSE_RESTART, json.dumps({"reconnect": True, "retry_after_ms": retry})

    async def drain(self) -> None:
        """Graceful shutdown: tell every connection to reconnect elsewhere, and wait a little."""
        self.draining = True
        for connection in list(self.connections):
            connection.close(*self.restart_close())
        if not self.connections:
            return
        self.emptied.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await self.emptied.wait()

    # Connections ----------------------------------------------------------------------------

    async def register(self, connection: Connection) -> None:
        """Subscribe to the user's channel (first local connection) and take a presence lease."""
        self.connections.add(connection)
        metrics.CONNECTIONS.inc()
        name = channel(connection.owner, connection.user.id)
        self.local.setdefault(name, set()).add(connection)
        await self._follow(name)
        if connection.user.supervises:
            # Subscribed from the connection's start, so it is in place before any watch verb
            # adds the user to the owner's watchers.
            name = watchers_channel(connection.owner)
            self.supervisors.setdefault(name, set()).add(connection)
            await self._follow(name)
        try:
            await self.services.presence.join(connection.owner, connection.user.id, connection.id)
        except Exception:
            log.exception("presence join failed for user %s", connection.user.id)

    async def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)
        metrics.CONNECTIONS.dec()
        if not self.connections:
            self.emptied.set()
        for name, registry in (
            (channel(connection.owner, connection.user.id), self.local),
            (watchers_channel(connection.owner), self.supervisors),
        ):
            members = registry.get(name)
            if members is not None:
                members.discard(connection)
                if not members:
                    del registry[name]
                with contextlib.suppress(Exception):
                    await self._follow(name)
        # Rule 9: the selection stays; only the lease starts running out.
        with contextlib.suppress(Exception):
            await self.services.presence.leave(connection.owner, connection.user.id, connection.id)

    async def _follow(self, name: str) -> None:
        """Subscribe to ``name`` or leave it, as this node's connections need it now. One at a
        time: a last connection leaving and a new one arriving for the same user must not
        cross (an unsubscribe landing after the subscribe would leave the new one deaf)."""
        async with self._following:
            wanted = name in self.local or name in self.supervisors
            if wanted and name not in self._followed:
                await self.pubsub.subscribe(name)
                self._followed.add(name)
            elif not wanted and name in self._followed:
                self._followed.discard(name)
                await self.pubsub.unsubscribe(name)

    def local_connections(self, owner: int, user_id: int) -> set[Connection]:
        return self.local.get(channel(owner, user_id), set())

    # Fan-out --------------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = RECONNECT_DELAY_S[0]
        while True:
            try:
                if not self.pubsub.subscribed:
                    # The pub/sub connection needs one subscription before it can be read.
                    await self.pubsub.subscribe(f"dh:node:{self.node_id}")
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py reconnects and subscribes again on the next read.
                log.warning("pub/sub read failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_S[1])
                continue
            delay = RECONNECT_DELAY_S[0]
            if message is not None and message.get("type") == "message":
                name = message["channel"]
                if name.endswith(WATCHERS_CHANNEL):
                    self.deliver_watchers(name, message["data"])
                else:
                    self.deliver(name, message["data"])

    def deliver(self, name: str, payload: str) -> None:
        """'<started ms>|<seq>|<event>|<frame>' to every local connection of the channel."""
        local = self.local.get(name)
        if not local:
            return
        try:
            started, seq, event, frame = payload.split("|", 3)
            seq_number = int(seq)
        except ValueError:
            log.warning("unreadable event on %s", name)
            return
        if event == "selection.revoked":
            metrics.KICK_SECONDS.observe(max(0, epoch_ms() - int(started)) / 1000)
        for connection in list(local):
            connection.deliver_event(seq_number, event, frame)
        if event == "selection.revoked" and self.on_revoked:
            self._tell_revoked(next(iter(local)), frame)

    def _tell_revoked(self, connection: Connection, frame: str) -> None:
        """After the user's screens: the node's own parts that act for the user (its dialer)."""
        try:
            data = json.loads(frame).get("data") or {}
        except ValueError:
            return
        for listener in self.on_revoked:
            task = asyncio.create_task(listener(connection.owner, connection.user.id, data))
            self._told.add(task)
            task.add_done_callback(self._told_done)

    def _told_done(self, task: asyncio.Task[None]) -> None:
        self._told.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a revocation listener failed", exc_info=task.exception())

    def deliver_watchers(self, name: str, payload: str) -> None:
        """'<started ms>|<event>|<user>:<seq>,...|<data>' to the local connections of each
        named watcher, each with its own seq."""
        try:
            _started, event, to, data = payload.split("|", 3)
            seqs = [(user, int(seq)) for user, seq in (p.split(":", 1) for p in to.split(","))]
        except ValueError:
            log.warning("unreadable event on %s", name)
            return
        prefix = name[: -len(WATCHERS_CHANNEL)]
        for user_id, seq in seqs:
            local = self.local.get(f"{prefix}ch:{user_id}")
            if not local:
                continue
            frame = event_frame(seq, event, data)
            for connection in list(local):
                connection.deliver_event(seq, event, frame)

    # Presence ---------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing presence leases failed")

    async def renew(self) -> None:
        """Push every local lease and supervisor watch one timeout ahead."""
        leases: dict[int, list[tuple[int, str]]] = defaultdict(list)
        watchers: dict[int, set[int]] = defaultdict(set)
        for connection in list(self.connections):
            leases[connection.owner].append((connection.user.id, connection.id))
            if connection.watching:
                watchers[connection.owner].add(connection.user.id)
        timeout_ms = int(self.services.settings.presence_timeout_seconds * 1000)
        for owner, members in leases.items():
            for start in range(0, len(members), RENEW_BATCH):
                await self.services.presence.renew(owner, members[start : start + RENEW_BATCH])
            for user_id in watchers.get(owner, ()):
                await self.services.events.watch(owner, user_id, epoch_ms() + timeout_ms)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every * random.uniform(0.8, 1.2))
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeping presence leases failed")

    async def sweep(self) -> int:
        """End run-out leases of every owner (also those of killed nodes)."""
        total = 0
        presence = self.services.presence
        for owner in await presence.owners():
            for _ in range(MAX_SWEEPS_PER_OWNER):
                swept = await presence.sweep(owner)
                total += swept
                if swept < 1000:
                    break
        if total:
            metrics.PRESENCE_SWEPT.inc(total)
        return total
