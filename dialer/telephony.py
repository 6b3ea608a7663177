"""The telephony port: what the dialer needs of a phone system, and the events it gets back.

A provider places and ends calls by the dialer's own call ids and reports each call's progress
to one handler: ``ringing``, then ``answered`` (later ``hung_up``), or one final ``busy`` /
``no_answer`` / ``failed``. ``dialer.simulator.SimulatedTelephony`` is the provider in tests,
the bench and the demo; a SIP or cloud-telephony adapter implements the same two methods.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class CallEventKind(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    HUNG_UP = "hung_up"


FINAL = frozenset({CallEventKind.BUSY, CallEventKind.NO_ANSWER, CallEventKind.FAILED})
"""Events that end a call nobody answered: each counts as an attempt (rule 13)."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    call_id: str
    kind: CallEventKind
    at: float
    """Seconds since the epoch, on the provider's clock (the dialer's clock)."""


CallEventHandler = Callable[[CallEvent], Awaitable[None]]


class Telephony(Protocol):
    """A phone system the dialer drives. Events go to the handler given to ``connect``."""

    def connect(self, handler: CallEventHandler) -> None:
        """Deliver every call event to ``handler`` from now on."""
        ...

    async def originate(self, call_id: str, number: str, caller_id: str) -> None:
        """Start calling ``number`` showing ``caller_id``; progress comes as events."""
        ...

    async def hang_up(self, call_id: str) -> None:
        """End the call (ringing or answered); a call that was up ends with ``hung_up``."""
        ...
