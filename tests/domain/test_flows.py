"""Customer flows: soundness at construction, and rules 18 and 19."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import FlowError, Invalid, InvalidTransition
from domain.flows import (
    AVAILABLE,
    CustomerFlow,
    DetailField,
    Outcome,
    Status,
    check_details,
    check_outcome,
    mass_outcome_options,
    valid_outcomes,
)
from domain.model import FieldType, FollowUpKind

STATUSES = (
    Status(AVAILABLE, "Available"),
    Status("interested", "Interested"),
    Status("sold", "Sold"),
    Status("refused", "Refused"),
)


def outcome(key: str, froms: set[str], to: str, **kw) -> Outcome:
    return Outcome(key, key.replace("_", " ").title(), frozenset(froms), to, **kw)


def sales_flow() -> CustomerFlow:
    return CustomerFlow(
        STATUSES,
        (
            outcome(
                "sale",
                {AVAILABLE, "interested"},
                "sold",
                details=(
                    DetailField("amount", "Amount", FieldType.NUMBER, required=True),
                    DetailField("note", "Note"),
                    DetailField("delivery", "Delivery date", FieldType.DATE),
                    DetailField("paper", "Paper invoice", FieldType.BOOL),
                ),
            ),
            outcome("interest", {AVAILABLE}, "interested", follow_up=FollowUpKind.PERSONAL),
            outcome("refusal", {AVAILABLE, "interested", "sold"}, "refused"),
            outcome("reopen", {"refused", "sold"}, AVAILABLE),
            outcome("cancel", {"sold"}, "refused"),
        ),
    )


def keys(outcomes) -> list[str]:
    return [o.key for o in outcomes]


# --- refusing flows that cannot work -------------------------------------------------------


def test_sound_flow_is_accepted_and_looked_up() -> None:
    flow = sales_flow()
    assert flow.status("sold") == Status("sold", "Sold")
    assert flow.status("nope") is None
    assert flow.outcome("sale").to_status == "sold"
    assert flow.outcome("nope") is None


def test_flow_without_available_is_refused() -> None:
    with pytest.raises(FlowError, match="no 'available' status"):
        CustomerFlow((Status("new", "New"),), ())


def test_outcome_from_unknown_status_is_refused() -> None:
    with pytest.raises(FlowError, match="outcome 'x' leads from unknown status 'ghost'"):
        CustomerFlow(STATUSES, (outcome("x", {AVAILABLE, "ghost"}, "sold"),))


def test_outcome_to_unknown_status_is_refused() -> None:
    with pytest.raises(FlowError, match="outcome 'x' leads to unknown status 'ghost'"):
        CustomerFlow(STATUSES, (outcome("x", {AVAILABLE}, "ghost"),))


def test_outcome_from_nowhere_is_refused() -> None:
    with pytest.raises(FlowError, match="outcome 'x' leads from no status"):
        CustomerFlow(STATUSES, (outcome("x", set(), "sold"),))


@pytest.mark.parametrize(
    ("statuses", "outcomes", "message"),
    [
        (
            (*STATUSES, Status("sold", "Sold again")),
            (),
            "duplicate status key 'sold'",
        ),
        (
            (*STATUSES, Status("sold2", " sold ")),
            (),
            "duplicate status name ' sold '",
        ),
        (
            STATUSES,
            (outcome("a", {AVAILABLE}, "sold"), Outcome("a", "Other", frozenset({"sold"}), "sold")),
            "duplicate outcome key 'a'",
        ),
        (
            STATUSES,
            (
                Outcome("a", "Same", frozenset({AVAILABLE}), "sold"),
                Outcome("b", "SAME", frozenset({AVAILABLE}), "sold"),
            ),
            "duplicate outcome name 'SAME'",
        ),
        (
            STATUSES,
            (
                outcome(
                    "a",
                    {AVAILABLE},
                    "sold",
                    details=(DetailField("d", "D"), DetailField("d", "D2")),
                ),
            ),
            "duplicate detail field of outcome 'a' 'd'",
        ),
    ],
)
def test_duplicate_names_are_refused(statuses, outcomes, message) -> None:
    with pytest.raises(FlowError) as err:
        CustomerFlow(statuses, outcomes)
    assert err.value.message == message
    assert err.value.code == "invalid"


def test_blank_status_and_outcome_names_are_refused() -> None:
    with pytest.raises(FlowError, match="every status needs a key and a name"):
        CustomerFlow((*STATUSES, Status("x", "  ")), ())
    with pytest.raises(FlowError, match="every outcome needs a key and a name"):
        CustomerFlow(STATUSES, (Outcome(" ", "Blank", frozenset({AVAILABLE}), "sold"),))


def test_flow_error_is_an_invalid_with_the_protocol_code() -> None:
    with pytest.raises(Invalid) as err:
        CustomerFlow((Status("new", "New"),), ())
    assert err.value.to_dict() == {
        "code": "invalid",
        "message": "the flow has no 'available' status to start customers in",
    }


# --- progressive outcomes ------------------------------------------------------------------


def test_progressive_outcome_takes_customer_out_of_available() -> None:
    flow = sales_flow()
    assert flow.outcome("sale").is_progressive_from(AVAILABLE)
    assert not flow.outcome("sale").is_progressive_from("interested")
    assert not flow.outcome("reopen").is_progressive_from("sold")
    stay = outcome("noop", {AVAILABLE}, AVAILABLE)
    assert not stay.is_progressive_from(AVAILABLE)


# --- rule 18 -------------------------------------------------------------------------------


def test_rule_18_outcome_only_from_its_statuses() -> None:
    flow = sales_flow()
    assert keys(valid_outcomes(flow, AVAILABLE)) == ["sale", "interest", "refusal"]
    assert keys(valid_outcomes(flow, "interested")) == ["sale", "refusal"]
    assert keys(valid_outcomes(flow, "sold")) == ["refusal", "reopen", "cancel"]
    assert keys(valid_outcomes(flow, "refused")) == ["reopen"]
    assert valid_outcomes(flow, "unknown") == ()


def test_rule_18_check_outcome_accepts_valid_transition() -> None:
    flow = sales_flow()
    found, details = check_outcome(flow, "sold", "cancel", {})
    assert found is flow.outcome("cancel")
    assert details == {}


def test_rule_18_check_outcome_refuses_invalid_transition_and_lists_allowed() -> None:
    flow = sales_flow()
    with pytest.raises(InvalidTransition) as err:
        check_outcome(flow, "refused", "sale", {"amount": 1})
    assert err.value.code == "invalid_transition"
    assert err.value.message == "outcome 'sale' cannot be saved on a customer in status 'refused'"
    assert err.value.details == {"status": "refused", "allowed": ["reopen"]}


def test_rule_18_check_outcome_refuses_unknown_outcome() -> None:
    with pytest.raises(InvalidTransition, match="outcome 'ghost' cannot be saved"):
        check_outcome(sales_flow(), AVAILABLE, "ghost", {})


def test_rule_18_outcome_details_are_coerced_and_saved() -> None:
    _, details = check_outcome(
        sales_flow(),
        AVAILABLE,
        "sale",
        {"amount": "1 234,5", "note": "  call at noon ", "delivery": "24.12.2024", "paper": "ja"},
    )
    assert details == {
        "amount": 1234.5,
        "note": "call at noon",
        "delivery": "2024-12-24",
        "paper": True,
    }


def test_rule_18_optional_details_may_be_missing_or_empty() -> None:
    _, details = check_outcome(sales_flow(), AVAILABLE, "sale", {"amount": 10, "note": ""})
    assert details == {"amount": 10}


def test_rule_18_bool_false_and_zero_are_values_not_missing() -> None:
    sale = sales_flow().outcome("sale")
    assert check_details(sale, {"amount": 0, "paper": False}) == {"amount": 0, "paper": False}


@pytest.mark.parametrize("missing", [{}, {"amount": None}, {"amount": ""}])
def test_rule_18_required_detail_must_be_given(missing) -> None:
    with pytest.raises(FlowError) as err:
        check_details(sales_flow().outcome("sale"), missing)
    assert err.value.message == "detail 'Amount' is required"
    assert err.value.details == {"field": "amount"}


def test_rule_18_unknown_detail_is_refused() -> None:
    with pytest.raises(FlowError) as err:
        check_details(sales_flow().outcome("sale"), {"amount": 1, "zzz": 1, "colour": "red"})
    assert err.value.message == "outcome 'sale' has no detail field 'colour'"
    assert err.value.details == {"field": "colour"}


def test_rule_18_detail_of_wrong_type_names_the_field() -> None:
    with pytest.raises(Invalid, match="Amount: 'lots' is not a number"):
        check_details(sales_flow().outcome("sale"), {"amount": "lots"})


# --- rule 19 -------------------------------------------------------------------------------


def test_rule_19_mass_outcome_is_intersection_over_statuses() -> None:
    flow = sales_flow()
    assert keys(mass_outcome_options(flow, [AVAILABLE])) == ["sale", "interest", "refusal"]
    assert keys(mass_outcome_options(flow, [AVAILABLE, "interested"])) == ["sale", "refusal"]
    assert keys(mass_outcome_options(flow, [AVAILABLE, "interested", "sold"])) == ["refusal"]
    assert keys(mass_outcome_options(flow, ["sold", "refused"])) == ["reopen"]
    assert mass_outcome_options(flow, [AVAILABLE, "refused"]) == ()


def test_rule_19_duplicate_statuses_count_once() -> None:
    flow = sales_flow()
    assert mass_outcome_options(flow, ["sold", "sold", "sold"]) == valid_outcomes(flow, "sold")


def test_rule_19_empty_filter_offers_nothing() -> None:
    assert mass_outcome_options(sales_flow(), []) == ()


def test_rule_19_unknown_status_present_offers_nothing() -> None:
    assert mass_outcome_options(sales_flow(), [AVAILABLE, "ghost"]) == ()


STATUS_KEYS = [s.key for s in STATUSES]


@st.composite
def flows(draw: st.DrawFn) -> CustomerFlow:
    n = draw(st.integers(min_value=0, max_value=8))
    outcomes = tuple(
        Outcome(
            f"o{i}",
            f"Outcome {i}",
            frozenset(draw(st.sets(st.sampled_from(STATUS_KEYS), min_size=1))),
            draw(st.sampled_from(STATUS_KEYS)),
        )
        for i in range(n)
    )
    return CustomerFlow(STATUSES, outcomes)


@given(flows(), st.lists(st.sampled_from(STATUS_KEYS), min_size=1))
def test_rule_19_property_mass_options_equal_intersection_of_valid_outcomes(flow, present) -> None:
    options = mass_outcome_options(flow, present)
    per_status = [set(keys(valid_outcomes(flow, s))) for s in present]
    assert set(keys(options)) == set.intersection(*per_status)
    for status in present:
        assert set(options) <= set(valid_outcomes(flow, status))
    # flow order is kept
    assert keys(options) == [o.key for o in flow.outcomes if o in options]
    # every option really saves on every present status
    for o in options:
        for status in present:
            assert check_outcome(flow, status, o.key, {})[0] is o
