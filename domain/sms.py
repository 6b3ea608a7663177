"""SMS flows (rule 23): the text an outcome's template makes for one customer, pure.

A template names customer fields in braces: ``{name}``, ``{external_id}``, ``{email}``,
``{phone}``, any info field of the CRM (``{municipality}``) and any detail field of the outcome
(``{price_plan}``). A placeholder the CRM and the outcome do not know is refused when the
template is checked, so a message never goes out with a hole nobody could fill.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.errors import Invalid
from domain.flows import Outcome
from domain.model import Crm

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
CUSTOMER_FIELDS = ("name", "external_id", "email", "phone")
MAX_LENGTH = 1600  # ten concatenated SMS parts


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One SMS to send; `key` identifies it to the provider (resending it is harmless)."""

    key: str
    to: str
    body: str


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def check_template(template: str, crm: Crm, outcome: Outcome) -> None:
    """Every placeholder names a customer field, an info field of the CRM or a detail of the
    outcome; Invalid names the first that does not."""
    known = {*CUSTOMER_FIELDS, *(f.key for f in crm.info_fields), *(d.key for d in outcome.details)}
    for name in placeholders(template):
        if name not in known:
            raise Invalid(
                f"SMS template of outcome '{outcome.key}': unknown field '{{{name}}}'",
                field=name,
            )


def render(
    template: str,
    *,
    name: str,
    external_id: str,
    email: str | None,
    phones: Sequence[str],
    info: Mapping[str, Any],
    details: Mapping[str, Any],
) -> str:
    """The message text; a field without a value becomes empty. Details win over info fields
    of the same name (what was just registered is the newer truth)."""
    values: dict[str, Any] = {**info, **details}
    values.update(
        name=name, external_id=external_id, email=email or "", phone=first_phone(phones) or ""
    )

    def fill(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return ""
        if isinstance(value, bool):
            return "ja" if value else "nei"
        return str(value)

    return PLACEHOLDER.sub(fill, template)[:MAX_LENGTH]


def first_phone(phones: Sequence[str]) -> str | None:
    """The number an SMS goes to: the first one that is not blank."""
    return next((p.strip() for p in phones if p and p.strip()), None)
