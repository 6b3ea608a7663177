"""The demo data set: definitions (data owners, CRMs, flows, setups) and fast customer rows.

Everything random comes from a random.Random with a fixed seed, so a demo is the same every
time. Customer rows are produced as records in repositories.CUSTOMER_COLUMNS order with their
JSON already encoded, so a million of them are generated in seconds (seed.seed_customers).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    AssignmentSetup,
    CrmKind,
    DialMode,
    FieldType,
    FollowUpKind,
    InfoField,
    SortKey,
)

DEMO_SEED = 20260101
PASSWORD = "demo"

NORDLYS = "Nordlys Energi AS"
FJORD = "Fjord Forsikring AS"
TIMEZONE = "Europe/Oslo"

NORDLYS_B2C_CRM = "Nordlys privatkunder"
NORDLYS_B2B_CRM = "Nordlys bedriftskunder"
FJORD_B2C_CRM = "Fjord privatkunder"

FIXED_PRICE = "Fixed-price offer winter 2026"
WIN_BACK = "Win-back former customers"
ENERGY_AUDIT = "Business energy audit"
HOME_INSURANCE = "Home insurance renewal 2026"

AGENT_COUNT = 20
NORDLYS_USERS = (
    *((f"agent{i}", "agent") for i in range(1, AGENT_COUNT + 1)),
    ("supervisor1", "supervisor"),
    ("admin1", "admin"),
)
FJORD_USERS = (("fjord_agent1", "agent"), ("fjord_supervisor1", "supervisor"))

# ---------------------------------------------------------------------------------------------
# CRMs

B2C_FIELDS = (
    InfoField("birth_year", "Birth year", FieldType.NUMBER),
    InfoField("municipality", "Municipality", FieldType.TEXT),
    InfoField("current_supplier", "Current supplier", FieldType.TEXT),
    InfoField("consent_date", "Consent date", FieldType.DATE),
    InfoField("has_solar", "Has solar panels", FieldType.BOOL),
)
B2B_FIELDS = (
    InfoField("org_number", "Organisation number", FieldType.TEXT),
    InfoField("employees", "Employees", FieldType.NUMBER),
    InfoField("industry", "Industry", FieldType.TEXT),
    InfoField("contract_end", "Contract end", FieldType.DATE),
)
FJORD_FIELDS = (
    InfoField("birth_year", "Birth year", FieldType.NUMBER),
    InfoField("municipality", "Municipality", FieldType.TEXT),
    InfoField("has_car", "Has a car", FieldType.BOOL),
    InfoField("renewal_date", "Renewal date", FieldType.DATE),
)

CRMS: dict[str, tuple[str, CrmKind, tuple[InfoField, ...]]] = {
    NORDLYS_B2C_CRM: (NORDLYS, CrmKind.B2C, B2C_FIELDS),
    NORDLYS_B2B_CRM: (NORDLYS, CrmKind.B2B, B2B_FIELDS),
    FJORD_B2C_CRM: (FJORD, CrmKind.B2C, FJORD_FIELDS),
}

# ---------------------------------------------------------------------------------------------
# Flows

_PRICE_PLAN = DetailField("price_plan", "Price plan", FieldType.TEXT, required=True)
_MONTHLY_KWH = DetailField("monthly_kwh", "Monthly consumption (kWh)", FieldType.NUMBER)
_REASON = DetailField("reason", "Reason", FieldType.TEXT)


def _o(key: str, name: str, from_: tuple[str, ...], to: str, **kw: Any) -> Outcome:
    return Outcome(key, name, frozenset(from_), to, **kw)


FIXED_PRICE_FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("sale_to_followup", "Sale to followup"),
        Status("sale", "Sale"),
        Status("not_interested", "Not interested"),
        Status("wrong_number", "Wrong number"),
    ),
    outcomes=(
        _o("interested", "Interested", (AVAILABLE,), "interested", details=(_MONTHLY_KWH,)),
        _o(
            "sale_to_followup",
            "Sale to followup",
            (AVAILABLE, "interested"),
            "sale_to_followup",
            follow_up=FollowUpKind.PERSONAL,
            details=(_PRICE_PLAN, _MONTHLY_KWH),
        ),
        _o(
            "sale",
            "Sale",
            (AVAILABLE, "interested", "sale_to_followup"),
            "sale",
            sms_template=(
                "Hei {name}! Takk for at du valgte Fastpris vinter 2026 fra Nordlys Energi. "
                "Prisplan: {price_plan}. Avtalen bekreftes på e-post."
            ),
            details=(
                _PRICE_PLAN,
                _MONTHLY_KWH,
                DetailField("start_date", "Start date", FieldType.DATE),
            ),
        ),
        _o(
            "call_in_spring",
            "Call in spring",
            (AVAILABLE, "interested"),
            AVAILABLE,
            follow_up=FollowUpKind.SHARED,
        ),
        _o(
            "not_interested",
            "Not interested",
            (AVAILABLE, "interested", "sale_to_followup"),
            "not_interested",
            details=(_REASON,),
        ),
        _o("wrong_number", "Wrong number", (AVAILABLE, "interested"), "wrong_number"),
    ),
)

WIN_BACK_FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("offer_sent", "Offer sent"),
        Status("won_back", "Won back"),
        Status("not_interested", "Not interested"),
        Status("moved", "Moved"),
        Status("wrong_number", "Wrong number"),
    ),
    outcomes=(
        _o("interested", "Interested", (AVAILABLE,), "interested"),
        _o(
            "send_offer",
            "Send offer",
            (AVAILABLE, "interested"),
            "offer_sent",
            follow_up=FollowUpKind.PERSONAL,
            sms_template="Hei {name}! Her er tilbudet vi snakket om: {offer_link}. Hilsen Nordlys",
            details=(DetailField("offer_link", "Offer link", FieldType.TEXT, required=True),),
        ),
        _o(
            "won_back",
            "Won back",
            (AVAILABLE, "interested", "offer_sent"),
            "won_back",
            sms_template="Velkommen tilbake til Nordlys Energi, {name}!",
            details=(_PRICE_PLAN, DetailField("discount_pct", "Discount (%)", FieldType.NUMBER)),
        ),
        _o(
            "try_later",
            "Try again later",
            (AVAILABLE, "interested"),
            AVAILABLE,
            follow_up=FollowUpKind.SHARED,
        ),
        _o(
            "not_interested",
            "Not interested",
            (AVAILABLE, "interested", "offer_sent"),
            "not_interested",
            details=(_REASON,),
        ),
        _o("moved", "Moved", (AVAILABLE, "interested"), "moved"),
        _o("wrong_number", "Wrong number", (AVAILABLE,), "wrong_number"),
    ),
)

ENERGY_AUDIT_FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("meeting_booked", "Meeting booked"),
        Status("audit_done", "Audit done"),
        Status("offer_sent", "Offer sent"),
        Status("signed", "Signed"),
        Status("not_relevant", "Not relevant"),
        Status("wrong_number", "Wrong number"),
    ),
    outcomes=(
        _o(
            "book_meeting",
            "Book meeting",
            (AVAILABLE,),
            "meeting_booked",
            follow_up=FollowUpKind.PERSONAL,
            sms_template="Bekreftelse: energikartlegging {meeting_date} med {contact_person}.",
            details=(
                DetailField("meeting_date", "Meeting date", FieldType.DATE, required=True),
                DetailField("contact_person", "Contact person", FieldType.TEXT, required=True),
            ),
        ),
        _o(
            "call_decision_maker",
            "Call decision maker later",
            (AVAILABLE,),
            AVAILABLE,
            follow_up=FollowUpKind.SHARED,
            details=(DetailField("contact_person", "Decision maker", FieldType.TEXT),),
        ),
        _o(
            "audit_done",
            "Audit done",
            ("meeting_booked",),
            "audit_done",
            details=(DetailField("saving_kwh", "Estimated yearly saving (kWh)", FieldType.NUMBER),),
        ),
        _o(
            "offer_sent",
            "Offer sent",
            ("audit_done",),
            "offer_sent",
            follow_up=FollowUpKind.PERSONAL,
            details=(
                DetailField("offer_value", "Offer value (NOK)", FieldType.NUMBER, required=True),
            ),
        ),
        _o("signed", "Signed", ("offer_sent",), "signed"),
        _o(
            "not_relevant",
            "Not relevant",
            (AVAILABLE, "meeting_booked", "audit_done", "offer_sent"),
            "not_relevant",
            details=(_REASON,),
        ),
        _o("wrong_number", "Wrong number", (AVAILABLE,), "wrong_number"),
    ),
)

HOME_INSURANCE_FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("renewed", "Renewed"),
        Status("not_interested", "Not interested"),
        Status("wrong_number", "Wrong number"),
    ),
    outcomes=(
        _o(
            "interested",
            "Interested",
            (AVAILABLE,),
            "interested",
            follow_up=FollowUpKind.PERSONAL,
        ),
        _o(
            "renewed",
            "Renewed",
            (AVAILABLE, "interested"),
            "renewed",
            sms_template="Takk, {name}! Innboforsikringen din er fornyet. Hilsen Fjord Forsikring",
            details=(DetailField("premium", "Yearly premium (NOK)", FieldType.NUMBER),),
        ),
        _o(
            "call_later",
            "Call later",
            (AVAILABLE,),
            AVAILABLE,
            follow_up=FollowUpKind.SHARED,
        ),
        _o("not_interested", "Not interested", (AVAILABLE, "interested"), "not_interested"),
        _o("wrong_number", "Wrong number", (AVAILABLE,), "wrong_number"),
    ),
)

CITY_SEGMENTS = (("Oslo", 30), ("Bergen", 20), ("Trondheim", 10))
# municipality -> segment name, per assignment (a customer outside them is unsegmented)
CITY_OF = {"Oslo": "Oslo", "Bergen": "Bergen", "Trondheim": "Trondheim"}
REGION_OF = {
    "Bergen": "Vestland",
    "Førde": "Vestland",
    "Voss": "Vestland",
    "Stavanger": "Rogaland",
    "Sandnes": "Rogaland",
    "Haugesund": "Rogaland",
}


# name -> (data owner, CRM, flow, setup, segments (name, priority), customers, record maker)
ASSIGNMENTS: dict[str, dict[str, Any]] = {
    FIXED_PRICE: {
        "owner": NORDLYS,
        "crm": NORDLYS_B2C_CRM,
        "flow": FIXED_PRICE_FLOW,
        "setup": AssignmentSetup(
            sort_keys=(
                SortKey("segment_priority", descending=True),
                SortKey("attempts"),
                SortKey("last_attempt_at"),
                SortKey("info.birth_year"),
            ),
            max_attempts=6,
            retry_delay=timedelta(hours=2),
            auto_sms=True,
            talk_timer_seconds=600,
            wrap_up_seconds=30,
            dial_mode=DialMode.PREVIEW,
        ),
        "segments": CITY_SEGMENTS,
        "customers": 300,
        "kind": CrmKind.B2C,
    },
    WIN_BACK: {
        "owner": NORDLYS,
        "crm": NORDLYS_B2C_CRM,
        "flow": WIN_BACK_FLOW,
        "setup": AssignmentSetup(
            max_attempts=4,
            retry_delay=timedelta(days=1),
            auto_sms=False,
            wrap_up_seconds=45,
            dial_mode=DialMode.PREVIEW,
        ),
        "segments": CITY_SEGMENTS,
        "customers": 250,
        "kind": CrmKind.B2C,
    },
    ENERGY_AUDIT: {
        "owner": NORDLYS,
        "crm": NORDLYS_B2B_CRM,
        "flow": ENERGY_AUDIT_FLOW,
        "setup": AssignmentSetup(
            sort_keys=(
                SortKey("segment_priority", descending=True),
                SortKey("info.employees", descending=True),
                SortKey("attempts"),
                SortKey("last_attempt_at"),
            ),
            max_attempts=8,
            retry_delay=timedelta(hours=4),
            auto_sms=True,
            talk_timer_seconds=900,
            wrap_up_seconds=60,
            dial_mode=DialMode.PROGRESSIVE,
            abandon_target=0.03,
        ),
        "segments": (("Large companies (50+)", 30), ("Medium companies (10-49)", 20)),
        "customers": 200,
        "kind": CrmKind.B2B,
    },
    HOME_INSURANCE: {
        "owner": FJORD,
        "crm": FJORD_B2C_CRM,
        "flow": HOME_INSURANCE_FLOW,
        "setup": AssignmentSetup(auto_sms=True, dial_mode=DialMode.PREVIEW),
        "segments": (("Vestland", 20), ("Rogaland", 10)),
        "customers": 150,
        "kind": CrmKind.B2C,
    },
}

# ---------------------------------------------------------------------------------------------
# Names, places and values


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Ingrid Kari Anne Marit Liv Hilde Nina Silje Ida Nora Emma Sofie Maja Ingeborg Astrid "
    "Solveig Tone Randi Hanne Camilla Ragnhild Marte Thea Sigrid Eli Berit Åse Gunn Kristin "
    "Vilde Jan Per Bjørn Ole Lars Kjell Knut Arne Svein Hans Geir Tor Terje Odd Erik Rune "
    "Trond Morten Håkon Jonas Magnus Henrik Sindre Eirik Øyvind Ståle Jørgen Aksel Sverre "
    "Olav Mathias Emil"
)
LAST_NAMES = _words(
    "Hansen Johansen Olsen Larsen Andersen Pedersen Nilsen Kristiansen Jensen Karlsen Johnsen "
    "Pettersen Eriksen Berg Haugen Hagen Johannessen Andreassen Jacobsen Dahl Jørgensen "
    "Halvorsen Henriksen Lund Sørensen Jakobsen Moen Gundersen Iversen Strand Solberg "
    "Svendsen Eide Knutsen Martinsen Paulsen Bakken Kristoffersen Mathisen Lie Amundsen "
    "Nguyen Rasmussen Ahmed Lunde Solheim Berge Moe Nygård Bakke Kristensen Fredriksen Holm "
    "Lien Hauge Christensen Andresen Nielsen Knudsen Evensen Sæther Aas Myhre Hanssen Ali "
    "Haugland Thomassen Sandvik Simonsen Mikkelsen Ødegård Hovland Engen"
)
# (municipality, weight): the big cities dominate, as they do in a real register.
MUNICIPALITIES = (
    ("Oslo", 22),
    ("Bergen", 11),
    ("Trondheim", 8),
    ("Stavanger", 5),
    ("Bærum", 4),
    ("Kristiansand", 4),
    ("Drammen", 3),
    ("Asker", 3),
    ("Lillestrøm", 3),
    ("Fredrikstad", 3),
    ("Sandnes", 3),
    ("Tromsø", 3),
    ("Sandefjord", 2),
    ("Ålesund", 2),
    ("Bodø", 2),
    ("Larvik", 2),
    ("Tønsberg", 2),
    ("Moss", 2),
    ("Haugesund", 2),
    ("Arendal", 2),
    ("Hamar", 1),
    ("Gjøvik", 1),
    ("Molde", 1),
    ("Harstad", 1),
    ("Lillehammer", 1),
    ("Førde", 1),
    ("Voss", 1),
)
SUPPLIERS = (
    "Tibber",
    "Fjordkraft",
    "Hafslund",
    "Fortum",
    "Motkraft",
    "Norgesenergi",
    "Lyse",
    "Ishavskraft",
    "Gudbrandsdal Energi",
)
EMAIL_DOMAINS = ("gmail.com", "hotmail.com", "online.no", "outlook.com", "icloud.com", "live.no")
INDUSTRIES = (
    "Retail",
    "Manufacturing",
    "Hospitality",
    "Construction",
    "Logistics",
    "Agriculture",
    "Healthcare",
    "Real estate",
    "Aquaculture",
    "IT services",
)
COMPANY_WORDS = _words(
    "Fjell Nord Vest Kyst Havn Bjørk Furu Lys Tind Elv Fonn Nes Vik Dal Haug Skog Berg Sjø "
    "Fossen Lia Strand Bryggen Polar Midt Sør Aurora Viking Granitt Stein"
)
COMPANY_KINDS = (
    "Bygg",
    "Transport",
    "Eiendom",
    "Handel",
    "Mekaniske",
    "Fisk",
    "Hotell",
    "Regnskap",
    "Elektro",
    "Bakeri",
    "Tre",
    "Sjømat",
    "Data",
    "Maskin",
    "Rør",
)

_ASCII = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "Æ": "Ae", "Ø": "O", "Å": "A"})


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    return tuple(name for name, weight in pairs for _ in range(weight))


_MUNI_POOL = _weighted(MUNICIPALITIES)
_MUNI_JS = {m: _js(m) for m, _ in MUNICIPALITIES}
_SUPPLIER_JS = tuple(_js(s) for s in SUPPLIERS)
_INDUSTRY_JS = tuple(_js(s) for s in INDUSTRIES)
_FIRST_MAIL = tuple(n.lower().translate(_ASCII) for n in FIRST_NAMES)
_LAST_MAIL = tuple(n.lower().translate(_ASCII) for n in LAST_NAMES)
_CONSENT_DATES = tuple(
    (date(2021, 1, 1) + timedelta(days=d)).isoformat() for d in range(0, 5 * 365)
)
_FUTURE_DATES = tuple((date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in range(0, 3 * 365))


def status_picker(rng: random.Random, weights: Mapping[str, int]) -> Callable[[], str]:
    pool = tuple(k for k, w in weights.items() for _ in range(w))
    return lambda: pool[int(rng.random() * len(pool))]


def b2c_records(
    rng: random.Random,
    first_external_id: int,
    n: int,
    *,
    data_owner_id: int,
    crm_id: int,
    assignment_id: int | None,
    segment_of: Mapping[str, int],
    default_segment_id: int | None,
    status: Callable[[], str] | None = None,
    insurance: bool = False,
) -> list[tuple[Any, ...]]:
    """n private customers as records (repositories.CUSTOMER_COLUMNS), JSON pre-encoded.

    The segment follows the municipality (segment_of: municipality -> segment id), else the
    default (unsegmented) one. ~8% have no phone, ~20% no email, ~5% two phones.
    """
    r = rng.random
    first_n, last_n = len(FIRST_NAMES), len(LAST_NAMES)
    muni_n, sup_n, dates_n = len(_MUNI_POOL), len(SUPPLIERS), len(_CONSENT_DATES)
    future_n = len(_FUTURE_DATES)
    out: list[tuple[Any, ...]] = []
    append = out.append
    for k in range(first_external_id, first_external_id + n):
        fi, li = int(r() * first_n), int(r() * last_n)
        name = f"{FIRST_NAMES[fi]} {LAST_NAMES[li]}"
        p = r()
        mobile = f'"+47{9 if r() < 0.7 else 4}{int(r() * 10_000_000):07d}"'
        if p < 0.08:
            phones = "[]"
        elif p < 0.13:
            phones = f'[{mobile}, "+47{int(r() * 90_000_000) + 10_000_000}"]'
        else:
            phones = f"[{mobile}]"
        email = (
            None
            if r() < 0.2
            else f"{_FIRST_MAIL[fi]}.{_LAST_MAIL[li]}{k % 97}@{EMAIL_DOMAINS[k % 6]}"
        )
        muni = _MUNI_POOL[int(r() * muni_n)]
        birth = 1940 + int(r() * 66)
        if insurance:
            info = (
                f'{{"birth_year": {birth}, "municipality": {_MUNI_JS[muni]}, '
                f'"has_car": {"true" if r() < 0.7 else "false"}, '
                f'"renewal_date": "{_FUTURE_DATES[int(r() * future_n)]}"}}'
            )
        else:
            info = (
                f'{{"birth_year": {birth}, "municipality": {_MUNI_JS[muni]}, '
                f'"current_supplier": {_SUPPLIER_JS[int(r() * sup_n)]}, '
                f'"consent_date": "{_CONSENT_DATES[int(r() * dates_n)]}", '
                f'"has_solar": {"true" if r() < 0.12 else "false"}}}'
            )
        append(
            (
                data_owner_id,
                crm_id,
                str(k),
                name,
                phones,
                email,
                info,
                assignment_id,
                segment_of.get(muni, default_segment_id) if assignment_id else None,
                (status() if status else AVAILABLE) if assignment_id else None,
                0,
                None,
            )
        )
    return out


def b2b_records(
    rng: random.Random,
    first_external_id: int,
    n: int,
    *,
    data_owner_id: int,
    crm_id: int,
    assignment_id: int | None,
    large_segment_id: int | None,
    medium_segment_id: int | None,
    default_segment_id: int | None,
    status: Callable[[], str] | None = None,
) -> list[tuple[Any, ...]]:
    """n companies as records; the segment follows the size (50+ large, 10-49 medium)."""
    r = rng.random
    out: list[tuple[Any, ...]] = []
    used: set[str] = set()
    for k in range(first_external_id, first_external_id + n):
        while True:
            word = COMPANY_WORDS[int(r() * len(COMPANY_WORDS))]
            kind = COMPANY_KINDS[int(r() * len(COMPANY_KINDS))]
            name = f"{word} {kind} AS"
            if name not in used or len(used) > 300:
                used.add(name)
                break
        employees = max(1, int(r() ** 3 * 400))
        first = FIRST_NAMES[int(r() * len(FIRST_NAMES))].lower().translate(_ASCII)
        domain = f"{word}{kind}".lower().translate(_ASCII)
        email = None if r() < 0.1 else f"{first}@{domain}.no"
        phones = "[]" if r() < 0.05 else f'["+47{int(r() * 90_000_000) + 10_000_000}"]'
        info = (
            f'{{"org_number": "{900_000_000 + int(r() * 99_999_999)}", '
            f'"employees": {employees}, '
            f'"industry": {_INDUSTRY_JS[int(r() * len(INDUSTRIES))]}, '
            f'"contract_end": "{_FUTURE_DATES[int(r() * len(_FUTURE_DATES))]}"}}'
        )
        if employees >= 50:
            segment = large_segment_id
        elif employees >= 10:
            segment = medium_segment_id
        else:
            segment = default_segment_id
        append_status = (status() if status else AVAILABLE) if assignment_id else None
        out.append(
            (
                data_owner_id,
                crm_id,
                str(k),
                name,
                phones,
                email,
                info,
                assignment_id,
                segment if assignment_id else None,
                append_status,
                0,
                None,
            )
        )
    return out


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
