"""The node's dialer, told to the agents: its events become per-user events on the WebSocket.

``DialerRelay`` listens to ``services.calls`` (the ``Dialer`` of this node) and sends

- ``work.pushed``: the customer screen of a customer the dialer handed the agent (progressive
  as it calls, predictive when an answered call is connected), or none (the list is empty);
- ``call.state``: the agent's call dialing, ringing, answered, ended (with its result);
- ``dialing.changed``: the agent's dialing state and running timer (talk, wrap-up) with the
  deadline in server time, so a page counts down from the server's clock;
- ``selection.revoked``: the wrap-up timer ran out and released the customer (rule 8).

Selections the dialer makes and ends are told to supervisors like any other
(``realtime.events``), and the agent's presence shows ``talking`` and ``wrap_up``. An agent
whose last connection to this node is gone for longer than the presence timeout leaves the
dialer here (its ringing calls are hung up); a reconnect to any node registers it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from dialer.dial_modes import DialerEvent
from dialer.timers import AgentSnapshot, AgentState
from domain.db import repositories as repo
from domain.model import User
from domain.times import iso_s
from presence.selections import Released, Selection
from realtime.events import SelectionRevoked, UserRef, selection_made, selection_released
from realtime.protocol import event
from realtime.services import Services

if TYPE_CHECKING:
    from realtime.hub import Hub

log = logging.getLogger(__name__)

CallStateName = Literal["dialing", "ringing", "answered", "ended"]
PRESENCE_OF = {AgentState.TALKING: "talking", AgentState.WRAP_UP: "wrap_up"}


@event("work.pushed")
class WorkPushed(BaseModel):
    """To the agent: the dialer handed it a customer (its screen; the agent holds it), or none
    (`screen` null: the list is empty, back to My Work)."""

    screen: dict[str, Any] | None
    mode: Literal["preview", "progressive", "predictive"] | None = None
    answered: bool = Field(default=False, description="predictive: the customer is on the line")
    call_id: str | None = None
    reason: Literal["pushed", "list_empty"] = "pushed"


@event("call.state")
class CallState(BaseModel):
    """To the agent: its call's progress. `result` (with `ended`): answered, busy, no_answer,
    failed, cancelled or abandoned; busy and no answer registered an attempt (rule 13)."""

    call_id: str
    state: CallStateName
    customer_id: str | None
    number: str | None = None
    result: str | None = None
    server_time: str = Field(description="ISO 8601 UTC: the server's clock at the change")


@event("dialing.changed")
class DialingChanged(BaseModel):
    """To the agent: its dialing state (off, available, previewing, dialing, talking,
    wrap_up), since when, and the running timer's deadline (talk: a warning; wrap-up: the
    customer is released then), all in server time."""

    user_id: str
    state: Literal["off", "available", "previewing", "dialing", "talking", "wrap_up"]
    since: str
    deadline: str | None
    customer_id: str | None
    call_id: str | None
    overrun: bool
    server_time: str


def dialing_data(snapshot: AgentSnapshot) -> dict[str, Any]:
    """The wire form of an agent's dialing state, with the server's clock."""
    return {**snapshot.wire(), "server_time": server_time()}


def server_time() -> str:
    return iso_s(time.time())


class DialerRelay:
    """Dialer events of this node to the agents' connections, supervisors and presence."""

    def __init__(self, services: Services, hub: Hub) -> None:
        self.services = services
        self.hub = hub
        self.dialer = services.calls
        self._users: dict[int, User] = {}
        self._presence: dict[tuple[int, int], str] = {}
        self._gone: dict[tuple[int, int], float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.dialer.listen(self.on_event)
        customers = self.dialer.customers
        if hasattr(customers, "on_selected"):
            customers.on_selected = self.on_selected
            customers.on_released = self.on_released
        self.hub.on_revoked.append(self.on_revoked)
        self._task = asyncio.create_task(self._watch_connections(), name="dialer-agents")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.dialer.close()

    async def on_revoked(self, owner: int, user_id: int, data: dict[str, Any]) -> None:
        """Rule 8 for the phone: someone released the customer an agent here is calling (a
        supervisor, say), so that call ends and the agent leaves dialing with the screen."""
        if data.get("reason") == "wrap_up_timer" or data.get("customer_id") is None:
            return  # the dialer's own release: it has moved on already
        await self.dialer.selection_revoked(owner, user_id, int(data["customer_id"]))

    # Supervisors ---------------------------------------------------------------------------

    async def on_selected(self, selection: Selection) -> None:
        await selection_made(self.services, selection)

    async def on_released(self, released: Released) -> None:
        by = await self._user(released.owner, released.by_user_id)
        if by is not None:
            await selection_released(self.services, released, by)

    # Agents --------------------------------------------------------------------------------

    async def on_event(self, e: DialerEvent) -> None:
        if e.user_id is None:
            return  # a call no agent took (abandoned): the call log and the pacer have it
        if e.kind == "agent" and e.agent is not None:
            await self._send(e.owner, e.user_id, "dialing.changed", dialing_data(e.agent))
            await self._show_presence(e.owner, e.user_id, e.agent.state)
        elif e.kind == "call" and e.call_id is not None:
            state = e.data.get("state")
            if state in ("dialing", "ringing", "answered", "ended"):
                data = CallState(
                    call_id=e.call_id,
                    state=state,
                    customer_id=None if e.customer_id is None else str(e.customer_id),
                    number=e.data.get("number"),
                    result=e.data.get("result"),
                    server_time=server_time(),
                )
                await self._send(e.owner, e.user_id, "call.state", data.model_dump(mode="json"))
        elif e.kind == "pushed":
            await self._pushed(e)
        elif e.kind == "list_empty":
            await self._send(
                e.owner,
                e.user_id,
                "work.pushed",
                WorkPushed(screen=None, reason="list_empty").model_dump(mode="json"),
            )
        elif e.kind == "released":
            await self._wrap_up_over(e)

    async def _pushed(self, e: DialerEvent) -> None:
        user = await self._user(e.owner, e.user_id)
        if user is None:
            return
        screen = (await self.services.work.resume(user)).screen
        if screen is None or screen["customer"]["id"] != str(e.customer_id):
            return  # ended meanwhile (a supervisor released it): nothing to show
        pushed = WorkPushed(
            screen=screen,
            mode=e.data.get("mode"),
            answered=bool(e.data.get("answered")),
            call_id=e.call_id,
        )
        await self._send(e.owner, user.id, "work.pushed", pushed.model_dump(mode="json"))

    async def _wrap_up_over(self, e: DialerEvent) -> None:
        """Rule 8 for the wrap-up timer: the agent's screen is thrown out, told why."""
        user = await self._user(e.owner, e.user_id)
        if user is None or e.customer_id is None:
            return
        revoked = SelectionRevoked(
            customer_id=str(e.customer_id),
            released_by=UserRef(id=str(user.id), name=user.name),
            message="The wrap-up time ran out; the customer was released.",
            reason="wrap_up_timer",
        )
        await self._send(e.owner, user.id, "selection.revoked", revoked.model_dump(mode="json"))

    async def _show_presence(self, owner: int, user_id: int, state: AgentState) -> None:
        """Supervisors see talking and wrap-up; after them, the agent is available again."""
        key = (owner, user_id)
        shown = PRESENCE_OF.get(state)
        if shown is None and key not in self._presence:
            return  # never set by the dialer: the agent's own state stays
        if shown is None:
            del self._presence[key]
            # Back from the call: available, or paused if the agent paused meanwhile.
            shown = "paused" if self.dialer.is_paused(owner, user_id) else "available"
        else:
            self._presence[key] = shown
        try:
            await self.services.presence.set_state(owner, user_id, shown)
        except Exception:
            log.exception("presence of user %s not set", user_id)

    async def _send(self, owner: int, user_id: int, name: str, data: dict[str, Any]) -> None:
        await self.services.events.to_users(owner, [user_id], name, data)

    async def _user(self, owner: int, user_id: int | None) -> User | None:
        if user_id is None:
            return None
        user = self._users.get(user_id)
        if user is None:
            async with self.services.engine.connect() as conn:
                user = await repo.get_user(conn, user_id)
            if user is None or user.data_owner_id != owner:
                return None
            self._users[user_id] = user
        return user

    # Agents who went away --------------------------------------------------------------------

    async def _watch_connections(self) -> None:
        timeout = self.services.settings.presence_timeout_seconds
        every = max(0.2, timeout / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.drop_gone(timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking the dialer's agents failed")

    async def drop_gone(self, grace_s: float) -> None:
        """An agent with no connection to this node for longer than the presence timeout
        leaves this node's dialer (a reconnect elsewhere registers it there)."""
        now = time.monotonic()
        agents = set(self.dialer.agents())
        for key in list(self._gone):
            if key not in agents:
                del self._gone[key]
        for owner, user_id in agents:
            if self.hub.local_connections(owner, user_id):
                self._gone.pop((owner, user_id), None)
                continue
            since = self._gone.setdefault((owner, user_id), now)
            if now - since < grace_s:
                continue
            del self._gone[(owner, user_id)]
            user = await self._user(owner, user_id)
            if user is not None:
                await self.dialer.agent_stopped(user)
