"""JSON <-> domain objects for what the schema stores as JSON: flows, setups, CRM info fields.

The JSON is plain (strings, numbers, booleans, lists, objects) so it reads the same from JSONB
and from SQLite's JSON text. Decoding is strict: a stored flow goes back through CustomerFlow,
which refuses a definition that cannot work; malformed JSON is refused as FlowError / Invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from domain.errors import FlowError, Invalid
from domain.flows import CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    AssignmentSetup,
    DialMode,
    FieldType,
    FollowUpKind,
    InfoField,
    SortKey,
)

# ---------------------------------------------------------------------------------------------
# Customer flow


def flow_to_json(flow: CustomerFlow) -> dict[str, Any]:
    """A flow as JSON; `from_statuses` is listed in the flow's status order (stable output)."""
    order = {s.key: i for i, s in enumerate(flow.statuses)}
    return {
        "statuses": [{"key": s.key, "name": s.name} for s in flow.statuses],
        "outcomes": [
            {
                "key": o.key,
                "name": o.name,
                "from_statuses": sorted(o.from_statuses, key=lambda k: (order.get(k, 1 << 30), k)),
                "to_status": o.to_status,
                "follow_up": o.follow_up.value if o.follow_up else None,
                "sms_template": o.sms_template,
                "details": [
                    {"key": d.key, "label": d.label, "type": d.type.value, "required": d.required}
                    for d in o.details
                ],
            }
            for o in flow.outcomes
        ],
    }


def flow_from_json(data: Any) -> CustomerFlow:
    """A CustomerFlow from its JSON; refuses malformed or unsound definitions (FlowError)."""
    obj = _object(data, "flow", FlowError)
    statuses = tuple(
        Status(
            key=_str(s, "key", "status", FlowError),
            name=_str(s, "name", "status", FlowError),
        )
        for s in (_object(x, "status", FlowError) for x in _list(obj, "statuses", "flow"))
    )
    outcomes = tuple(_outcome_from_json(x) for x in _list(obj, "outcomes", "flow"))
    return CustomerFlow(statuses=statuses, outcomes=outcomes)


def _outcome_from_json(data: Any) -> Outcome:
    obj = _object(data, "outcome", FlowError)
    key = _str(obj, "key", "outcome", FlowError)
    where = f"outcome '{key}'"
    from_statuses = _list(obj, "from_statuses", where)
    if not all(isinstance(s, str) for s in from_statuses):
        raise FlowError(f"{where}: from_statuses must be a list of status keys")
    follow_up_raw = obj.get("follow_up")
    try:
        follow_up = FollowUpKind(follow_up_raw) if follow_up_raw is not None else None
    except ValueError:
        raise FlowError(f"{where}: unknown follow-up kind '{follow_up_raw}'") from None
    sms = obj.get("sms_template")
    if sms is not None and not isinstance(sms, str):
        raise FlowError(f"{where}: sms_template must be text")
    details = tuple(_detail_from_json(d, where) for d in obj.get("details") or ())
    return Outcome(
        key=key,
        name=_str(obj, "name", where, FlowError),
        from_statuses=frozenset(from_statuses),
        to_status=_str(obj, "to_status", where, FlowError),
        follow_up=follow_up,
        sms_template=sms or None,
        details=details,
    )


def _detail_from_json(data: Any, where: str) -> DetailField:
    obj = _object(data, f"{where} detail field", FlowError)
    key = _str(obj, "key", f"{where} detail field", FlowError)
    required = obj.get("required", False)
    if not isinstance(required, bool):
        raise FlowError(f"{where}: detail field '{key}': required must be true or false")
    return DetailField(
        key=key,
        label=str(obj.get("label") or key),
        type=_field_type(obj.get("type", "text"), f"{where}: detail field '{key}'", FlowError),
        required=required,
    )


# ---------------------------------------------------------------------------------------------
# Assignment setup


def setup_to_json(setup: AssignmentSetup) -> dict[str, Any]:
    return {
        "sort_keys": [{"field": k.field, "descending": k.descending} for k in setup.sort_keys],
        "max_attempts": setup.max_attempts,
        "retry_delay_seconds": int(setup.retry_delay.total_seconds()),
        "auto_sms": setup.auto_sms,
        "talk_timer_seconds": setup.talk_timer_seconds,
        "wrap_up_seconds": setup.wrap_up_seconds,
        "dial_mode": setup.dial_mode.value,
        "abandon_target": setup.abandon_target,
    }


def setup_from_json(data: Any) -> AssignmentSetup:
    """An AssignmentSetup from JSON; missing keys take the model's defaults."""
    obj = _object(data, "assignment setup", Invalid)
    default = AssignmentSetup()
    sort_keys = default.sort_keys
    if "sort_keys" in obj:
        raw_keys = obj["sort_keys"]
        if not isinstance(raw_keys, list):
            raise Invalid("assignment setup: sort_keys must be a list")
        keys = []
        for raw in raw_keys:
            key = _object(raw, "sort key", Invalid)
            descending = key.get("descending", False)
            if not isinstance(descending, bool):
                raise Invalid("sort key: descending must be true or false")
            keys.append(SortKey(_str(key, "field", "sort key", Invalid), descending))
        sort_keys = tuple(keys)
    retry_seconds = obj.get("retry_delay_seconds", default.retry_delay.total_seconds())
    try:
        dial_mode = DialMode(obj.get("dial_mode", default.dial_mode.value))
    except ValueError:
        raise Invalid(f"assignment setup: unknown dial mode '{obj.get('dial_mode')}'") from None
    abandon = obj.get("abandon_target", default.abandon_target)
    if isinstance(abandon, bool) or not isinstance(abandon, int | float) or not 0 <= abandon <= 1:
        raise Invalid("assignment setup: abandon_target must be a fraction between 0 and 1")
    auto_sms = obj.get("auto_sms", default.auto_sms)
    if not isinstance(auto_sms, bool):
        raise Invalid("assignment setup: auto_sms must be true or false")
    return AssignmentSetup(
        sort_keys=sort_keys,
        max_attempts=_optional_int(obj, "max_attempts", default.max_attempts),
        retry_delay=timedelta(seconds=_seconds(retry_seconds, "retry_delay_seconds")),
        auto_sms=auto_sms,
        talk_timer_seconds=_optional_int(obj, "talk_timer_seconds", default.talk_timer_seconds),
        wrap_up_seconds=_optional_int(obj, "wrap_up_seconds", default.wrap_up_seconds),
        dial_mode=dial_mode,
        abandon_target=float(abandon),
    )


def _optional_int(obj: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(f"assignment setup: {key} must be a whole number >= 0 or null")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Invalid(f"assignment setup: {key} must be a number of seconds >= 0")
    return float(value)


# ---------------------------------------------------------------------------------------------
# CRM info fields


def info_fields_to_json(fields: Iterable[InfoField]) -> list[dict[str, Any]]:
    return [{"key": f.key, "label": f.label, "type": f.type.value} for f in fields]


def info_fields_from_json(data: Any) -> tuple[InfoField, ...]:
    if not isinstance(data, list):
        raise Invalid("info fields must be a list")
    fields = []
    seen: set[str] = set()
    for raw in data:
        obj = _object(raw, "info field", Invalid)
        key = _str(obj, "key", "info field", Invalid)
        if key.casefold() in seen:
            raise Invalid(f"duplicate info field '{key}'")
        seen.add(key.casefold())
        fields.append(
            InfoField(
                key=key,
                label=str(obj.get("label") or key),
                type=_field_type(obj.get("type", "text"), f"info field '{key}'", Invalid),
            )
        )
    return tuple(fields)


# ---------------------------------------------------------------------------------------------
# helpers


def _object(data: Any, what: str, error: type[Invalid]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise error(f"{what} must be a JSON object")
    return data


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise FlowError(f"{where}: '{key}' must be a list")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, error: type[Invalid]) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where}: '{key}' must be non-empty text")
    return value


def _field_type(value: Any, where: str, error: type[Invalid]) -> FieldType:
    try:
        return FieldType(value)
    except ValueError:
        raise error(f"{where}: unknown field type '{value}'") from None
