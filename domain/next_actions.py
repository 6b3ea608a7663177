"""Rule 17: where saving in the customer screen can take the agent, default first."""

from __future__ import annotations

from domain.errors import Invalid
from domain.model import NextAction, WorkMode

_OPTIONS = {
    WorkMode.MANUAL: (NextAction.MY_WORK, NextAction.CONTINUE),
    WorkMode.LIST: (NextAction.NEXT_FROM_LIST, NextAction.MY_WORK, NextAction.CONTINUE),
}


def next_options(mode: WorkMode) -> tuple[NextAction, ...]:
    """The choices offered after a save; the first one is the default."""
    return _OPTIONS[mode]


def default_next(mode: WorkMode) -> NextAction:
    return _OPTIONS[mode][0]


def check_next(mode: WorkMode, choice: NextAction | None) -> NextAction:
    """The choice the agent made, or the default; a choice the mode does not offer is refused."""
    if choice is None:
        return default_next(mode)
    if choice not in _OPTIONS[mode]:
        offered = ", ".join(a.value for a in _OPTIONS[mode])
        raise Invalid(f"'{choice.value}' is not offered in {mode.value} work (offered: {offered})")
    return choice


def ends_list_work(choice: NextAction) -> bool:
    """Going to My Work releases the customer, stops running timers and ends predictive dialing."""
    return choice is NextAction.MY_WORK


def releases_selection(choice: NextAction) -> bool:
    """Every choice but "continue" lets go of the current customer (rule 7)."""
    return choice is not NextAction.CONTINUE
