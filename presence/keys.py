"""The selection store's Redis key layout.

Every key of one data owner carries the hash tag ``{o:<data_owner_id>}``, so every key a script
touches hashes to one slot and the store runs unchanged on Redis Cluster. Users and customers
belong to exactly one data owner (rule 1), so no operation ever spans two tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def owner_prefix(owner: int) -> str:
    """``dh:{o:<owner>}:``: the start of every key of one data owner."""
    return f"dh:{{o:{int(owner)}}}:"


def customer_key(owner: int, customer_id: int) -> str:
    """Hash: user, token, since, assignment, segment, mode of the customer's holder."""
    return f"{owner_prefix(owner)}cust:{int(customer_id)}"


def user_key(owner: int, user_id: int) -> str:
    """String: the id of the customer the user holds."""
    return f"{owner_prefix(owner)}user:{int(user_id)}"


def live_key(owner: int) -> str:
    """Hash: customer id -> compact JSON row of the Selected Customers list."""
    return f"{owner_prefix(owner)}sel"


def fence_key(owner: int) -> str:
    """String counter: the last fencing token handed out; it only ever grows."""
    return f"{owner_prefix(owner)}fence"


def ready_key(owner: int) -> str:
    """Marker: this owner's locks were loaded from the database since Redis last lost them."""
    return f"{owner_prefix(owner)}ready"


def due_key(owner: int, assignment_id: int) -> str:
    """ZSET: customer id -> when (epoch ms) its shared follow-up in the assignment falls due.
    A hopper that sees one fall due puts the due customers first (rule 11)."""
    return f"{owner_prefix(owner)}due:{int(assignment_id)}"


@dataclass(frozen=True)
class HopperKey:
    """Names one hopper: the list work of one assignment over a set of segments (None: all)."""

    assignment_id: int
    segment_ids: frozenset[int] | None = None

    @classmethod
    def of(cls, assignment_id: int, segment_ids: Iterable[int] | None = None) -> HopperKey:
        segments = None if segment_ids is None else frozenset(int(s) for s in segment_ids)
        return cls(int(assignment_id), segments or None)

    @property
    def segment_set(self) -> str:
        """``all``, or the sorted segment ids joined by commas: one name per distinct set."""
        if not self.segment_ids:
            return "all"
        return ",".join(str(s) for s in sorted(self.segment_ids))

    def key(self, owner: int) -> str:
        """ZSET: candidate customer ids, score = hand-out order."""
        return f"{owner_prefix(owner)}hop:{self.assignment_id}:{self.segment_set}"

    def promoted_key(self, owner: int) -> str:
        """String: up to when (epoch ms) due shared follow-ups were put first in this hopper."""
        return f"{owner_prefix(owner)}hopdue:{self.assignment_id}:{self.segment_set}"

    def segments_key(self, owner: int) -> str:
        """Hash: candidate customer id -> its segment id, for the selection a claim makes."""
        return f"{owner_prefix(owner)}hopseg:{self.assignment_id}:{self.segment_set}"
