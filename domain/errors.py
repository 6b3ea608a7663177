"""Domain errors carry the protocol's error code, so every edge answers them the same way."""

from __future__ import annotations

from typing import Any

from domain.times import iso_ms


class DomainError(Exception):
    """A refusal the user can understand: `code` is one of PROTOCOL.md's error codes."""

    code = "invalid"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class Invalid(DomainError):
    code = "invalid"


class NotFound(DomainError):
    """Also the answer for another data owner's ids (rule 3): they must look nonexistent."""

    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class FlowError(Invalid):
    """A customer flow definition that cannot work; the message names the problem."""


class WatertightError(Forbidden):
    """Rule 1: a customer never crosses a data owner, a CRM or the B2B/B2C wall."""


# Selections (rules 4-8): raised by the Redis store and by the database fence alike.


class AlreadySelected(DomainError):
    """Rule 4/6: someone else holds the customer; says by whom and since when."""

    code = "already_selected"

    def __init__(self, customer_id: int, held_by: int, since: int) -> None:
        super().__init__(
            "The customer is selected by another user.", held_by=str(held_by), since=iso_ms(since)
        )
        self.customer_id = customer_id
        self.held_by = held_by
        self.since = since


class UserHasSelection(DomainError):
    """Rule 4: the user already holds another customer."""

    code = "user_has_selection"

    def __init__(self, customer_id: int) -> None:
        super().__init__("You already have a customer selected.", customer_id=str(customer_id))
        self.customer_id = customer_id


class SelectionLost(DomainError):
    """Rule 8: the token is no longer the live one (released or replaced)."""

    code = "selection_lost"

    def __init__(self, customer_id: int, held_by: int | None = None) -> None:
        super().__init__("Your selection of this customer has ended.", customer_id=str(customer_id))
        self.customer_id = customer_id
        self.held_by = held_by
