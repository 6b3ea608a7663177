"""The model of DOMAIN.md as plain typed Python: no I/O, no framework.

Ids are integers inside the server and strings on the wire. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.flows import CustomerFlow


class CrmKind(enum.StrEnum):
    B2B = "b2b"
    B2C = "b2c"


class FieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOL = "bool"


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class DialMode(enum.StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"


class AttemptKind(enum.StrEnum):
    NO_ANSWER = "no_answer"
    CALL_BACK_LATER = "call_back_later"


class FollowUpKind(enum.StrEnum):
    PERSONAL = "personal"
    SHARED = "shared"


class WorkMode(enum.StrEnum):
    """How the agent came to the customer: list work (next right customer) or a manual select."""

    LIST = "list"
    MANUAL = "manual"


class NextAction(enum.StrEnum):
    NEXT_FROM_LIST = "next_from_list"
    MY_WORK = "my_work"
    CONTINUE = "continue"


class HistoryKind(enum.StrEnum):
    CREATED = "created"
    SELECTED = "selected"
    RELEASED = "released"
    ATTEMPT = "attempt"
    OUTCOME = "outcome"
    FOLLOW_UP_CREATED = "follow_up_created"
    FOLLOW_UP_ENDED = "follow_up_ended"
    FIELD_EDITED = "field_edited"
    MOVED = "moved"
    IMPORTED = "imported"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class DataOwner:
    id: int
    name: str
    timezone: str = "Europe/Oslo"


@dataclass(frozen=True, slots=True)
class InfoField:
    """A custom field a CRM defines for its customers (informasjonsfelt)."""

    key: str
    label: str
    type: FieldType = FieldType.TEXT


@dataclass(frozen=True, slots=True)
class Crm:
    id: int
    data_owner_id: int
    name: str
    kind: CrmKind
    info_fields: tuple[InfoField, ...] = ()

    def info_field(self, key: str) -> InfoField | None:
        return next((f for f in self.info_fields if f.key == key), None)


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    assignment_id: int
    name: str
    priority: int = 0
    is_unsegmented: bool = False


UNSEGMENTED_NAME = "Unsegmented"


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of the list order (rule 10).

    `field` is `segment_priority`, `attempts`, `last_attempt_at`, `created_at`,
    `external_id`, or `info.<key>` for an info field of the CRM.
    """

    field: str
    descending: bool = False


DEFAULT_SORT = (
    SortKey("segment_priority", descending=True),
    SortKey("attempts"),
    SortKey("last_attempt_at"),
)


@dataclass(frozen=True, slots=True)
class AssignmentSetup:
    """Oppdragsoppsett: order, limits, SMS, timers and dial mode of an assignment."""

    sort_keys: tuple[SortKey, ...] = DEFAULT_SORT
    max_attempts: int | None = 6
    retry_delay: timedelta = timedelta(hours=2)
    auto_sms: bool = False
    talk_timer_seconds: int | None = None
    wrap_up_seconds: int | None = 30
    dial_mode: DialMode = DialMode.PREVIEW
    abandon_target: float = 0.03


@dataclass(frozen=True, slots=True)
class Assignment:
    id: int
    data_owner_id: int
    crm_id: int
    name: str
    flow: CustomerFlow
    setup: AssignmentSetup = field(default_factory=AssignmentSetup)
    segments: tuple[Segment, ...] = ()

    @property
    def unsegmented(self) -> Segment:
        return next(s for s in self.segments if s.is_unsegmented)

    def segment(self, segment_id: int) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer card with its placement (rule 2: at most one assignment, segment, status)."""

    id: int
    crm_id: int
    data_owner_id: int
    external_id: str
    name: str
    phones: tuple[str, ...] = ()
    email: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    assignment_id: int | None = None
    segment_id: int | None = None
    status: str | None = None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def has_phone(self) -> bool:
        return any(p.strip() for p in self.phones)

    @property
    def has_email(self) -> bool:
        return bool(self.email and self.email.strip())


@dataclass(frozen=True, slots=True)
class User:
    id: int
    data_owner_id: int
    username: str
    name: str
    role: Role
    active: bool = True

    @property
    def supervises(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Grant:
    user_id: int
    assignment_id: int


@dataclass(frozen=True, slots=True)
class Attempt:
    customer_id: int
    assignment_id: int
    user_id: int
    kind: AttemptKind
    at: datetime
    call_back_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A dated reminder: personal (owned by one user) or shared (owned by nobody)."""

    id: int
    customer_id: int
    assignment_id: int
    kind: FollowUpKind
    due_at: datetime
    owner_user_id: int | None = None
    created_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def overdue(self, now: datetime) -> bool:
        return self.open and self.due_at < now


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    customer_id: int
    kind: HistoryKind
    at: datetime
    user_id: int | None = None
    assignment_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
