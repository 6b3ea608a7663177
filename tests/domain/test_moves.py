"""Rule 20 (with rules 1 and 5): what moving a customer does, or why it cannot."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.errors import Invalid, WatertightError
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import Assignment, Crm, CrmKind, Customer, Segment
from domain.moves import (
    MoveEffect,
    MoveSkip,
    plan_move_to_assignment,
    plan_move_to_segment,
    skip_reason,
)

FLOW = CustomerFlow(
    (Status(AVAILABLE, "Available"), Status("interested", "Interested")),
    (Outcome("interest", "Interest", frozenset({AVAILABLE}), "interested"),),
)
CRM = Crm(10, 1, "Private", CrmKind.B2C)
CRM_SAME_KIND = Crm(11, 1, "Private 2", CrmKind.B2C)
CRM_B2B = Crm(12, 1, "Business", CrmKind.B2B)
FOREIGN = Crm(20, 2, "Theirs", CrmKind.B2C)


def assignment(id_: int, crm: Crm = CRM) -> Assignment:
    base = id_ * 100
    return Assignment(
        id_,
        crm.data_owner_id,
        crm.id,
        f"A{id_}",
        FLOW,
        segments=(
            Segment(base + 1, id_, "North", priority=5),
            Segment(base + 2, id_, "Unsegmented", is_unsegmented=True),
            Segment(base + 3, id_, "South", priority=1),
        ),
    )


SOURCE = assignment(1)
TARGET = assignment(2)
CUSTOMER = Customer(
    1, CRM.id, CRM.data_owner_id, "K-1", "Ola", assignment_id=1, segment_id=101,
    status="interested", attempts=3,
)  # fmt: skip


# --- move to another assignment --------------------------------------------------------------


def test_rule_20_move_to_assignment_resets_status() -> None:
    effect = plan_move_to_assignment(CUSTOMER, CRM, TARGET, CRM)
    assert effect == MoveEffect(2, 202, AVAILABLE, drops_status_and_follow_ups=True)


def test_rule_20_unplaced_customer_can_be_moved_in() -> None:
    loose = replace(CUSTOMER, assignment_id=None, segment_id=None, status=None)
    assert plan_move_to_assignment(loose, CRM, TARGET, CRM).segment_id == TARGET.unsegmented.id


def test_rule_20_move_to_own_assignment_is_refused() -> None:
    with pytest.raises(Invalid, match="already in this assignment; move it to a segment"):
        plan_move_to_assignment(CUSTOMER, CRM, SOURCE, CRM)


def test_rule_20_target_assignment_must_work_the_customers_crm() -> None:
    other = assignment(3, CRM_SAME_KIND)
    with pytest.raises(Invalid, match="works another CRM"):
        plan_move_to_assignment(CUSTOMER, CRM, other, CRM)


def test_rule_01_move_to_assignment_across_data_owner_is_refused() -> None:
    with pytest.raises(WatertightError, match="another data owner"):
        plan_move_to_assignment(CUSTOMER, CRM, assignment(4, FOREIGN), FOREIGN)


def test_rule_01_move_to_assignment_across_b2b_b2c_is_refused() -> None:
    with pytest.raises(WatertightError, match="between a B2C and a B2B CRM"):
        plan_move_to_assignment(CUSTOMER, CRM, assignment(5, CRM_B2B), CRM_B2B)


def test_rule_01_move_to_assignment_across_crm_is_refused() -> None:
    with pytest.raises(WatertightError, match="within its own CRM"):
        plan_move_to_assignment(CUSTOMER, CRM, assignment(6, CRM_SAME_KIND), CRM_SAME_KIND)


# --- move to another segment -----------------------------------------------------------------


def test_rule_20_move_to_segment_keeps_status() -> None:
    effect = plan_move_to_segment(CUSTOMER, SOURCE, 103)
    assert effect == MoveEffect(1, 103, "interested", drops_status_and_follow_ups=False)


def test_rule_20_move_to_unsegmented_keeps_status() -> None:
    effect = plan_move_to_segment(CUSTOMER, SOURCE, SOURCE.unsegmented.id)
    assert (effect.segment_id, effect.status) == (102, "interested")


def test_rule_20_move_to_segment_of_another_assignment_is_refused() -> None:
    with pytest.raises(Invalid, match="not in this assignment"):
        plan_move_to_segment(CUSTOMER, TARGET, 201)


def test_rule_20_move_to_segment_needs_a_placed_customer() -> None:
    loose = replace(CUSTOMER, status=None)
    with pytest.raises(Invalid, match="not in this assignment"):
        plan_move_to_segment(loose, SOURCE, 103)


def test_rule_20_move_to_unknown_segment_is_refused() -> None:
    with pytest.raises(Invalid, match="no such segment in this assignment"):
        plan_move_to_segment(CUSTOMER, SOURCE, 201)


# --- skips (rules 5 and 21) ------------------------------------------------------------------


def test_rule_05_moves_skip_selected() -> None:
    to_assignment = plan_move_to_assignment(CUSTOMER, CRM, TARGET, CRM)
    to_segment = plan_move_to_segment(CUSTOMER, SOURCE, 103)
    assert skip_reason(CUSTOMER, to_assignment, selected=True) is MoveSkip.SELECTED
    assert skip_reason(CUSTOMER, to_segment, selected=True) is MoveSkip.SELECTED
    assert skip_reason(CUSTOMER, to_assignment, selected=False) is None
    assert skip_reason(CUSTOMER, to_segment, selected=False) is None


def test_rule_05_selected_wins_over_already_there() -> None:
    same = plan_move_to_segment(CUSTOMER, SOURCE, CUSTOMER.segment_id)
    assert skip_reason(CUSTOMER, same, selected=True) is MoveSkip.SELECTED


def test_rule_21_move_to_where_it_is_is_skipped_as_already_there() -> None:
    same = plan_move_to_segment(CUSTOMER, SOURCE, CUSTOMER.segment_id)
    assert skip_reason(CUSTOMER, same, selected=False) is MoveSkip.ALREADY_THERE
    assert MoveSkip.ALREADY_THERE == "already_there"
