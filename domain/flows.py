"""Customer flows (kundeflyt): statuses, outcomes as transitions, and the rules that read them.

A flow is refused at construction when it cannot work (rule 18 depends on it being sound):
unknown statuses, outcomes from nowhere, duplicate names, no `available` start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import FlowError, InvalidTransition
from domain.fields import coerce_value
from domain.model import FieldType, FollowUpKind

AVAILABLE = "available"


@dataclass(frozen=True, slots=True)
class Status:
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class DetailField:
    """A field the flow asks for when an outcome is saved (utfallsdetaljer)."""

    key: str
    label: str
    type: FieldType = FieldType.TEXT
    required: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """A named transition from one or more statuses to a target status (utfall)."""

    key: str
    name: str
    from_statuses: frozenset[str]
    to_status: str
    follow_up: FollowUpKind | None = None
    sms_template: str | None = None
    details: tuple[DetailField, ...] = ()

    def is_progressive_from(self, status: str) -> bool:
        """Progressive outcome: one that takes a customer out of `available`."""
        return status == AVAILABLE and self.to_status != AVAILABLE


@dataclass(frozen=True, slots=True)
class CustomerFlow:
    statuses: tuple[Status, ...]
    outcomes: tuple[Outcome, ...]

    def __post_init__(self) -> None:
        _check_flow(self)

    def status(self, key: str) -> Status | None:
        return next((s for s in self.statuses if s.key == key), None)

    def outcome(self, key: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.key == key), None)


def _check_flow(flow: CustomerFlow) -> None:
    _refuse_duplicates("status key", [s.key for s in flow.statuses])
    _refuse_duplicates("status name", [s.name for s in flow.statuses])
    _refuse_duplicates("outcome key", [o.key for o in flow.outcomes])
    _refuse_duplicates("outcome name", [o.name for o in flow.outcomes])
    keys = {s.key for s in flow.statuses}
    if AVAILABLE not in keys:
        raise FlowError(f"the flow has no '{AVAILABLE}' status to start customers in")
    for status in flow.statuses:
        if not status.key.strip() or not status.name.strip():
            raise FlowError("every status needs a key and a name")
    for outcome in flow.outcomes:
        if not outcome.key.strip() or not outcome.name.strip():
            raise FlowError("every outcome needs a key and a name")
        if not outcome.from_statuses:
            raise FlowError(
                f"outcome '{outcome.key}' leads from no status (an outcome from nowhere)"
            )
        unknown = sorted(outcome.from_statuses - keys)
        if unknown:
            raise FlowError(f"outcome '{outcome.key}' leads from unknown status '{unknown[0]}'")
        if outcome.to_status not in keys:
            raise FlowError(
                f"outcome '{outcome.key}' leads to unknown status '{outcome.to_status}'"
            )
        _refuse_duplicates(
            f"detail field of outcome '{outcome.key}'", [d.key for d in outcome.details]
        )


def _refuse_duplicates(what: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        folded = name.strip().casefold()
        if folded in seen:
            raise FlowError(f"duplicate {what} '{name}'")
        seen.add(folded)


def valid_outcomes(flow: CustomerFlow, status: str) -> tuple[Outcome, ...]:
    """Rule 18: the outcomes that can be saved on a customer in `status`, in flow order."""
    return tuple(o for o in flow.outcomes if status in o.from_statuses)


def mass_outcome_options(flow: CustomerFlow, statuses: Iterable[str]) -> tuple[Outcome, ...]:
    """Rule 19: only outcomes valid from *every* status present in the filter.

    No status present (an empty filter) means nothing can be registered.
    """
    present = set(statuses)
    if not present:
        return ()
    return tuple(o for o in flow.outcomes if present <= o.from_statuses)


def check_outcome(
    flow: CustomerFlow, status: str, outcome_key: str, details: Mapping[str, Any]
) -> tuple[Outcome, dict[str, Any]]:
    """Rule 18: the outcome must be a valid transition from `status`; its details are checked.

    Returns the outcome and the details coerced to their field types.
    """
    outcome = flow.outcome(outcome_key)
    if outcome is None or status not in outcome.from_statuses:
        allowed = [o.key for o in valid_outcomes(flow, status)]
        raise InvalidTransition(
            f"outcome '{outcome_key}' cannot be saved on a customer in status '{status}'",
            status=status,
            allowed=allowed,
        )
    return outcome, check_details(outcome, details)


def check_details(outcome: Outcome, details: Mapping[str, Any]) -> dict[str, Any]:
    """Outcome details: known keys only, required ones present, values of the declared type."""
    known = {d.key: d for d in outcome.details}
    unknown = sorted(set(details) - set(known))
    if unknown:
        raise FlowError(
            f"outcome '{outcome.key}' has no detail field '{unknown[0]}'", field=unknown[0]
        )
    clean: dict[str, Any] = {}
    for key, spec in known.items():
        raw = details.get(key)
        if raw is None or raw == "":
            if spec.required:
                raise FlowError(f"detail '{spec.label}' is required", field=key)
            continue
        clean[key] = coerce_value(spec.type, raw, label=spec.label)
    return clean
