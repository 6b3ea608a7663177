"""Bulk work as pure rules (19-21): what a job's report says, and which moves can start at all.

Every bulk operation accounts for each customer it matched: changed, or skipped for a named
reason (rule 21). ``BulkReport`` keeps that sum and writes the line a supervisor reads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.errors import Invalid
from domain.model import Assignment, Crm, Customer
from domain.tenancy import check_customer_stays_home


class JobKind(enum.StrEnum):
    OUTCOME = "outcome"
    MOVE = "move"
    IMPORT = "import"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SkipReason(enum.StrEnum):
    """Why a matched customer was left as it was (rule 21)."""

    SELECTED = "selected"  # rule 5: someone holds it (database or Redis)
    ALREADY_THERE = "already_there"  # a move to where it is
    STATUS_CHANGED = "status_changed"  # no longer in a status the outcome leads from
    NO_LONGER_MATCHING = "no_longer_matching"  # changed by someone else since the job began


VERBS = {JobKind.OUTCOME: "changed", JobKind.MOVE: "moved", JobKind.IMPORT: "updated"}


@dataclass(frozen=True, slots=True)
class BulkReport:
    """What a bulk operation did: matched = changed + every skip (nothing silently dropped)."""

    kind: JobKind
    matched: int
    changed: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.changed + sum(self.skipped.values()) != self.matched:
            raise ValueError(
                f"report does not add up: {self.changed} changed + skips "
                f"{dict(self.skipped)} != {self.matched} matched"
            )

    @property
    def summary(self) -> str:
        """E.g. "997 of 1000 moved; 3 selected"."""
        line = f"{self.changed} of {self.matched} {VERBS[self.kind]}"
        skips = [f"{n} {reason.replace('_', ' ')}" for reason, n in self.skipped.items() if n]
        return "; ".join([line, *skips])

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "matched": self.matched,
            "changed": self.changed,
            "skipped": {k: v for k, v in self.skipped.items() if v},
            "summary": self.summary,
            **self.extra,
        }


def check_move_to_assignment(
    source: Assignment, source_crm: Crm, target: Assignment, target_crm: Crm
) -> None:
    """Rules 1 and 20 for a whole move: the target works the customers' own CRM and is another
    assignment. The wall depends only on the two CRMs, so any customer of the source CRM stands
    for all of them."""
    probe = Customer(
        id=0,
        crm_id=source_crm.id,
        data_owner_id=source_crm.data_owner_id,
        external_id="",
        name="",
        assignment_id=source.id,
    )
    check_customer_stays_home(probe, source_crm, target_crm)
    if target.id == source.id:
        raise Invalid("the customers are already in this assignment; move them to a segment")
    if target.crm_id != source.crm_id:
        raise Invalid("the target assignment works another CRM")
