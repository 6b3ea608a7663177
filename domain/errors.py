"""Domain errors carry the protocol's error code, so every edge answers them the same way."""

from __future__ import annotations

from typing import Any


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
