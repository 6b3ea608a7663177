"""Rules 1 and 3: watertight data owners, and what a user may see and do."""

from __future__ import annotations

from collections.abc import Collection

from domain.errors import Forbidden, NotFound, WatertightError
from domain.model import Assignment, Crm, Customer, Role, User


def can_see_assignment(user: User, assignment: Assignment, granted: Collection[int]) -> bool:
    """Rule 3: an admin sees every assignment of its data owner; others only granted ones."""
    if not user.active or user.data_owner_id != assignment.data_owner_id:
        return False
    return user.role is Role.ADMIN or assignment.id in granted


def visible_assignment(
    user: User, assignment: Assignment | None, granted: Collection[int]
) -> Assignment:
    """The assignment, or NotFound exactly as if it did not exist (rule 3)."""
    if assignment is None or not can_see_assignment(user, assignment, granted):
        raise NotFound("no such assignment")
    return assignment


def require_supervisor(user: User) -> None:
    """Supervisor verbs (release others, watch, bulk work) need a supervisor or admin."""
    if user.role not in (Role.SUPERVISOR, Role.ADMIN):
        raise Forbidden("this needs a supervisor or administrator")


def require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden("this needs an administrator")


def check_customer_stays_home(customer: Customer, source: Crm, target: Crm) -> None:
    """Rule 1: a customer never leaves its CRM: not to another data owner, nor across B2B/B2C.

    Each CRM has its own field definitions, so even a CRM of the same owner and kind is refused.
    """
    if customer.crm_id != source.id:
        raise WatertightError("the customer does not belong to that CRM")
    if source.data_owner_id != target.data_owner_id:
        raise WatertightError("a customer can never move to another data owner")
    if source.kind is not target.kind:
        raise WatertightError(
            f"a customer can never move between a {source.kind.upper()} "
            f"and a {target.kind.upper()} CRM"
        )
    if source.id != target.id:
        raise WatertightError("a customer can only move within its own CRM")
