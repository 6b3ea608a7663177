"""Rule 17: where saving in the customer screen can take the agent, default first."""

from __future__ import annotations

import pytest

from domain.errors import Invalid
from domain.model import NextAction, WorkMode
from domain.next_actions import (
    check_next,
    default_next,
    ends_list_work,
    next_options,
    releases_selection,
)


def test_rule_17_next_options_default_first_manual() -> None:
    assert next_options(WorkMode.MANUAL) == (NextAction.MY_WORK, NextAction.CONTINUE)
    assert default_next(WorkMode.MANUAL) is NextAction.MY_WORK


def test_rule_17_next_options_default_first_list() -> None:
    assert next_options(WorkMode.LIST) == (
        NextAction.NEXT_FROM_LIST,
        NextAction.MY_WORK,
        NextAction.CONTINUE,
    )
    assert default_next(WorkMode.LIST) is NextAction.NEXT_FROM_LIST


@pytest.mark.parametrize("mode", list(WorkMode))
def test_rule_17_no_choice_means_the_default(mode) -> None:
    assert check_next(mode, None) is next_options(mode)[0]


@pytest.mark.parametrize(
    ("mode", "choice"),
    [(mode, choice) for mode in WorkMode for choice in next_options(mode)],
)
def test_rule_17_offered_choices_are_accepted(mode, choice) -> None:
    assert check_next(mode, choice) is choice


def test_rule_17_manual_work_offers_no_next_from_list() -> None:
    with pytest.raises(Invalid) as err:
        check_next(WorkMode.MANUAL, NextAction.NEXT_FROM_LIST)
    assert err.value.message == (
        "'next_from_list' is not offered in manual work (offered: my_work, continue)"
    )


def test_rule_17_my_work_from_list_stops_timers_and_dialing() -> None:
    assert ends_list_work(NextAction.MY_WORK)
    assert not ends_list_work(NextAction.NEXT_FROM_LIST)
    assert not ends_list_work(NextAction.CONTINUE)


def test_rule_07_every_choice_but_continue_releases_the_selection() -> None:
    assert releases_selection(NextAction.NEXT_FROM_LIST)
    assert releases_selection(NextAction.MY_WORK)
    assert not releases_selection(NextAction.CONTINUE)
