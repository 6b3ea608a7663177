"""Rule 20 (with rules 1 and 5): what moving a customer does, or why it cannot."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.errors import Invalid
from domain.flows import AVAILABLE
from domain.model import Assignment, Crm, Customer
from domain.tenancy import check_customer_stays_home


class MoveSkip(enum.StrEnum):
    """Why a customer of a bulk move stayed where it was; counted in the report (rule 21)."""

    SELECTED = "selected"
    ALREADY_THERE = "already_there"


@dataclass(frozen=True, slots=True)
class MoveEffect:
    """Where the customer lands and what it keeps."""

    assignment_id: int
    segment_id: int
    status: str
    drops_status_and_follow_ups: bool


def plan_move_to_assignment(
    customer: Customer, source_crm: Crm, target: Assignment, target_crm: Crm
) -> MoveEffect:
    """Another assignment of the same CRM: `available` and unsegmented there; status and
    follow-ups are dropped, history stays with the customer."""
    check_customer_stays_home(customer, source_crm, target_crm)
    if customer.assignment_id == target.id:
        raise Invalid("the customer is already in this assignment; move it to a segment instead")
    if target.crm_id != customer.crm_id:
        raise Invalid("the target assignment works another CRM")
    return MoveEffect(target.id, target.unsegmented.id, AVAILABLE, drops_status_and_follow_ups=True)


def plan_move_to_segment(customer: Customer, assignment: Assignment, segment_id: int) -> MoveEffect:
    """Another segment of the customer's assignment: status and follow-ups are kept."""
    if customer.assignment_id != assignment.id or customer.status is None:
        raise Invalid("the customer is not in this assignment")
    if assignment.segment(segment_id) is None:
        raise Invalid("no such segment in this assignment")
    return MoveEffect(assignment.id, segment_id, customer.status, drops_status_and_follow_ups=False)


def skip_reason(customer: Customer, effect: MoveEffect, selected: bool) -> MoveSkip | None:
    """Rule 5: a selected customer is locked where it is; a move to where it is changes nothing."""
    if selected:
        return MoveSkip.SELECTED
    if (customer.assignment_id, customer.segment_id) == (effect.assignment_id, effect.segment_id):
        return MoveSkip.ALREADY_THERE
    return None
