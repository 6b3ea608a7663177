"""Rules 1 and 3: watertight data owners, and what a user may see and do."""

from __future__ import annotations

import pytest

from domain.errors import Forbidden, NotFound, WatertightError
from domain.flows import AVAILABLE, CustomerFlow, Status
from domain.model import Assignment, Crm, CrmKind, Customer, Role, Segment, User
from domain.tenancy import (
    can_see_assignment,
    check_customer_stays_home,
    require_admin,
    require_supervisor,
    visible_assignment,
)

FLOW = CustomerFlow((Status(AVAILABLE, "Available"),), ())
OWNER, OTHER_OWNER = 1, 2


def assignment(id_: int, owner: int = OWNER) -> Assignment:
    return Assignment(id_, owner, 10, f"A{id_}", FLOW, segments=(Segment(1, id_, "U", 0, True),))


def user(role: Role = Role.AGENT, owner: int = OWNER, active: bool = True) -> User:
    return User(5, owner, "kari", "Kari", role, active)


CRM_B2C = Crm(10, OWNER, "Private", CrmKind.B2C)
CRM_B2C_2 = Crm(11, OWNER, "Private 2", CrmKind.B2C)
CRM_B2B = Crm(12, OWNER, "Business", CrmKind.B2B)
FOREIGN_B2C = Crm(20, OTHER_OWNER, "Theirs", CrmKind.B2C)
CUSTOMER = Customer(1, CRM_B2C.id, OWNER, "K-1", "Ola")


# --- rule 3 ----------------------------------------------------------------------------------


def test_rule_03_agent_sees_only_granted_assignments() -> None:
    agent = user()
    assert can_see_assignment(agent, assignment(1), {1, 3})
    assert not can_see_assignment(agent, assignment(2), {1, 3})


def test_rule_03_supervisor_also_needs_a_grant() -> None:
    assert not can_see_assignment(user(Role.SUPERVISOR), assignment(2), set())
    assert can_see_assignment(user(Role.SUPERVISOR), assignment(2), {2})


def test_rule_03_admin_sees_every_assignment_of_its_own_data_owner() -> None:
    assert can_see_assignment(user(Role.ADMIN), assignment(2), set())
    assert not can_see_assignment(user(Role.ADMIN), assignment(2, OTHER_OWNER), set())


def test_rule_01_grant_never_crosses_data_owner() -> None:
    assert not can_see_assignment(user(), assignment(2, OTHER_OWNER), {2})


def test_rule_03_inactive_user_sees_nothing() -> None:
    assert not can_see_assignment(user(active=False), assignment(1), {1})
    assert not can_see_assignment(user(Role.ADMIN, active=False), assignment(1), set())


def test_rule_03_visible_assignment_returns_it() -> None:
    a = assignment(1)
    assert visible_assignment(user(), a, {1}) is a


def test_rule_03_ungranted_assignment_is_not_found() -> None:
    missing = _message(NotFound, lambda: visible_assignment(user(), None, {1}))
    ungranted = _message(NotFound, lambda: visible_assignment(user(), assignment(2), {1}))
    foreign = _message(
        NotFound, lambda: visible_assignment(user(Role.ADMIN), assignment(2, OTHER_OWNER), {2})
    )
    # another tenant's id answers exactly like one that does not exist
    assert missing == ungranted == foreign == {"code": "not_found", "message": "no such assignment"}


def _message(kind: type[Exception], call) -> dict:
    with pytest.raises(kind) as err:
        call()
    return err.value.to_dict()


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.ADMIN])
def test_supervisor_verbs_allow_supervisors_and_admins(role) -> None:
    require_supervisor(user(role))


def test_supervisor_verbs_refuse_agents() -> None:
    with pytest.raises(Forbidden, match="needs a supervisor or administrator"):
        require_supervisor(user(Role.AGENT))


@pytest.mark.parametrize("role", [Role.AGENT, Role.SUPERVISOR])
def test_admin_verbs_refuse_non_admins(role) -> None:
    with pytest.raises(Forbidden, match="needs an administrator"):
        require_admin(user(role))
    require_admin(user(Role.ADMIN))


def test_user_supervises() -> None:
    assert not user(Role.AGENT).supervises
    assert user(Role.SUPERVISOR).supervises
    assert user(Role.ADMIN).supervises


# --- rule 1 ----------------------------------------------------------------------------------


def test_rule_01_customer_stays_in_its_own_crm() -> None:
    check_customer_stays_home(CUSTOMER, CRM_B2C, CRM_B2C)


def test_rule_01_no_move_across_data_owner() -> None:
    with pytest.raises(WatertightError) as err:
        check_customer_stays_home(CUSTOMER, CRM_B2C, FOREIGN_B2C)
    assert err.value.message == "a customer can never move to another data owner"
    assert err.value.code == "forbidden"


def test_rule_01_no_move_across_b2b_b2c() -> None:
    with pytest.raises(WatertightError) as err:
        check_customer_stays_home(CUSTOMER, CRM_B2C, CRM_B2B)
    assert err.value.message == "a customer can never move between a B2C and a B2B CRM"


def test_rule_01_no_move_across_crm() -> None:
    with pytest.raises(WatertightError, match="can only move within its own CRM"):
        check_customer_stays_home(CUSTOMER, CRM_B2C, CRM_B2C_2)


def test_rule_01_source_must_be_the_customers_crm() -> None:
    with pytest.raises(WatertightError, match="does not belong to that CRM"):
        check_customer_stays_home(CUSTOMER, CRM_B2C_2, CRM_B2C_2)
