"""Attempts and follow-ups: rules 13-16."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.errors import Invalid
from domain.flows import AVAILABLE, Outcome
from domain.model import AttemptKind, FollowUp, FollowUpKind


@dataclass(frozen=True, slots=True)
class FollowUpPlan:
    """A follow-up to create; `owner_user_id` is None for a shared one."""

    kind: FollowUpKind
    due_at: datetime
    owner_user_id: int | None


def plan_attempt(
    kind: AttemptKind, status: str, user_id: int, at: datetime | None, now: datetime
) -> FollowUpPlan | None:
    """Rules 13 and 14: what an attempt creates besides counting one.

    `no_answer` takes no time and creates nothing. `call_back_later` needs a future time and makes
    a shared follow-up on an `available` customer, a personal one (owned by `user_id`) otherwise.
    """
    if kind is AttemptKind.NO_ANSWER:
        if at is not None:
            raise Invalid("no_answer takes no follow-up time; use call_back_later")
        return None
    if at is None:
        raise Invalid("call_back_later needs a time ('at')")
    _require_future(at, now)
    if status == AVAILABLE:
        return FollowUpPlan(FollowUpKind.SHARED, at, None)
    return FollowUpPlan(FollowUpKind.PERSONAL, at, user_id)


def attempt_ends_follow_ups(kind: AttemptKind, status: str) -> bool:
    """Does an attempt settle the customer's open follow-ups (they leave My Work)?

    A `call_back_later` replaces them with its own. A `no_answer` on an `available` customer
    sends it back into the list (rule 13), which reaches it again. A `no_answer` on a customer
    in any other status leaves them open: that customer is in no list, so its follow-up is the
    only way anyone calls it again (it stays in My Work, overdue, until reached or rescheduled).
    """
    return AttemptKind(kind) is not AttemptKind.NO_ANSWER or status == AVAILABLE


def plan_outcome_follow_up(
    outcome: Outcome, user_id: int, at: datetime | None, now: datetime
) -> FollowUpPlan | None:
    """Rule 15: an outcome creates the follow-up its flow designer chose (personal or shared)."""
    if outcome.follow_up is None:
        if at is not None:
            raise Invalid(f"outcome '{outcome.key}' takes no follow-up time")
        return None
    if at is None:
        raise Invalid(f"outcome '{outcome.key}' needs a follow-up time")
    _require_future(at, now)
    owner = user_id if outcome.follow_up is FollowUpKind.PERSONAL else None
    return FollowUpPlan(outcome.follow_up, at, owner)


def _require_future(at: datetime, now: datetime) -> None:
    if at.tzinfo is None:
        raise Invalid("a follow-up time needs a time zone (ISO 8601 with offset)")
    if at <= now:
        raise Invalid("a follow-up time must lie in the future")


@dataclass(frozen=True, slots=True)
class MyWork:
    """Rule 16: My Work's follow-up lists for one user, each sorted by due time."""

    today_mine: tuple[FollowUp, ...]
    today_shared: tuple[FollowUp, ...]
    overdue_mine: tuple[FollowUp, ...]
    overdue_shared: tuple[FollowUp, ...]


@dataclass(frozen=True, slots=True)
class SidePanel:
    """Rule 16: the customer screen's side panel."""

    upcoming_mine: tuple[FollowUp, ...]
    overdue_mine: tuple[FollowUp, ...]
    overdue_shared: tuple[FollowUp, ...]


def end_of_day(now: datetime, timezone: str) -> datetime:
    """The end of the data owner's local day containing `now`, as an aware datetime."""
    local = now.astimezone(ZoneInfo(timezone))
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=local.tzinfo)
    return midnight.astimezone(now.tzinfo)


def my_work(follow_ups: Iterable[FollowUp], user_id: int, now: datetime, timezone: str) -> MyWork:
    """Split open follow-ups into today's (mine / shared) and overdue (mine / shared).

    "Today" is what falls due from now until the end of the local day; what fell due before now
    and is still open is overdue. Another user's personal follow-ups never show.
    """
    day_end = end_of_day(now, timezone)
    today_mine, today_shared, overdue_mine, overdue_shared = [], [], [], []
    for f in sorted(_visible(follow_ups, user_id), key=lambda f: (f.due_at, f.id)):
        mine = f.kind is FollowUpKind.PERSONAL
        if f.due_at < now:
            (overdue_mine if mine else overdue_shared).append(f)
        elif f.due_at < day_end:
            (today_mine if mine else today_shared).append(f)
    return MyWork(
        tuple(today_mine), tuple(today_shared), tuple(overdue_mine), tuple(overdue_shared)
    )


def side_panel(follow_ups: Iterable[FollowUp], user_id: int, now: datetime) -> SidePanel:
    """My upcoming personal follow-ups, my overdue personal ones, and overdue shared ones."""
    upcoming, overdue_mine, overdue_shared = [], [], []
    for f in sorted(_visible(follow_ups, user_id), key=lambda f: (f.due_at, f.id)):
        if f.kind is FollowUpKind.PERSONAL:
            (overdue_mine if f.due_at < now else upcoming).append(f)
        elif f.due_at < now:
            overdue_shared.append(f)
    return SidePanel(tuple(upcoming), tuple(overdue_mine), tuple(overdue_shared))


def _visible(follow_ups: Iterable[FollowUp], user_id: int) -> Iterable[FollowUp]:
    for f in follow_ups:
        if not f.open:
            continue
        if f.kind is FollowUpKind.PERSONAL and f.owner_user_id != user_id:
            continue
        yield f
