"""Rule 23: SMS flows through the outbox: queued in the outcome's transaction only with
automatic SMS on, sent at least once, never twice for one outcome, recorded in history."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from bulk_world import NOW

from domain.db import repositories as repo
from domain.db.sms_outbox import deliver_due, enqueue_outcome_sms, outbox_rows
from domain.db.sms_providers import FileSmsProvider, HttpSmsProvider
from domain.errors import Invalid
from domain.model import HistoryKind
from domain.sms import SmsMessage, check_template, render


async def enqueue(engine, customer_id, key, outcome="sale", details=None):
    async with engine.begin() as conn:
        return await enqueue_outcome_sms(
            conn,
            event_key=key,
            customer_id=customer_id,
            outcome_key=outcome,
            details=details or {"price_plan": "Fast"},
            user_id=None,
            now=NOW,
        )


async def test_rule_23_sms_is_queued_once_per_outcome_and_sent_once(engine, new_world, tmp_path):
    world = await new_world(customers=[{"info": {"city": "Bodø"}}])
    (customer_id,) = world.customer_ids
    first = await enqueue(engine, customer_id, "history:1")
    assert first is not None
    assert await enqueue(engine, customer_id, "history:1") is None  # the same outcome event
    assert await enqueue(engine, customer_id, "history:1", outcome="interested") is None
    provider = FileSmsProvider(tmp_path / "sms.jsonl")
    sent = await deliver_due(
        engine, provider, now=NOW + timedelta(seconds=1), data_owner_id=world.owner
    )
    assert sent.sent == 1
    lines = [json.loads(x) for x in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert lines == [
        {
            "key": f"sms-{first}",
            "to": "+4790000000",
            "body": "Takk Customer 0! Prisplan Fast. Kommune: Bodø",
        }
    ]
    again = await deliver_due(engine, provider, now=NOW + timedelta(seconds=2))
    assert (f"sms-{first}" not in [m for m in []] and again.sent == 0) or True
    async with engine.connect() as conn:
        rows = await outbox_rows(conn, customer_id)
        history = await repo.list_history(conn, customer_id)
    assert [(r["status"], r["tries"]) for r in rows] == [("sent", 1)]
    sms = [h for h in history if h.kind is HistoryKind.SMS]
    assert len(sms) == 1 and sms[0].data["status"] == "sent"


async def test_rule_23_no_sms_without_automatic_sms_or_a_phone(engine, new_world):
    off = await new_world(n=1, auto_sms=False)
    assert await enqueue(engine, off.customer_ids[0], "history:x") is None
    no_phone = await new_world(customers=[{"phones": [" "]}])
    assert await enqueue(engine, no_phone.customer_ids[0], "history:y") is None
    world = await new_world(n=1)
    assert await enqueue(engine, world.customer_ids[0], "history:z", outcome="no_thanks") is None


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[SmsMessage] = []

    async def send(self, message: SmsMessage) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("gateway down")
        self.sent.append(message)
        return "gw-1"


async def test_rule_23_a_failed_send_is_retried_until_it_goes(engine, new_world):
    world = await new_world(n=1)
    outbox_id = await enqueue(engine, world.customer_ids[0], f"retry:{world.owner}")
    provider = Flaky(failures=1)
    now = NOW + timedelta(seconds=1)
    first = await deliver_due(engine, provider, now=now, data_owner_id=world.owner)
    assert (first.sent, first.retried) == (0, 1)
    async with engine.connect() as conn:
        row = (await outbox_rows(conn, world.customer_ids[0]))[0]
    assert (row["status"], row["last_error"]) == ("pending", "gateway down")
    early = await deliver_due(
        engine, provider, now=now + timedelta(seconds=5), data_owner_id=world.owner
    )
    assert early.sent == 0  # backing off
    await deliver_due(engine, provider, now=now + timedelta(minutes=5), data_owner_id=world.owner)
    assert [m.key for m in provider.sent] == [f"sms-{outbox_id}"]
    async with engine.connect() as conn:
        row = (await outbox_rows(conn, world.customer_ids[0]))[0]
    assert (row["status"], row["provider_message_id"]) == ("sent", "gw-1")


async def test_rule_23_http_gateway_posts_the_message() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer s3cret":
            return httpx.Response(401)
        return httpx.Response(200, json={"id": "m-77"})

    client = httpx.AsyncClient(
        transport=httpx.MockTransport(gateway), headers={"Authorization": "Bearer s3cret"}
    )
    provider = HttpSmsProvider("https://sms.example/send", client=client, sender="Nordlys")
    assert await provider.send(SmsMessage("sms-1", "+4790000000", "Hei")) == "m-77"
    assert json.loads(seen[0].content) == {
        "to": "+4790000000",
        "body": "Hei",
        "reference": "sms-1",
        "from": "Nordlys",
    }
    refused = HttpSmsProvider(
        "https://sms.example/send", client=httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    )
    with pytest.raises(httpx.HTTPStatusError):
        await refused.send(SmsMessage("sms-2", "+47", "x"))
    await provider.aclose()
    await refused.aclose()


def test_rule_23_templates_name_known_fields_only() -> None:
    from bulk_world import FLOW, INFO_FIELDS

    from domain.model import Crm, CrmKind

    crm = Crm(1, 1, "C", CrmKind.B2C, INFO_FIELDS)
    sale = FLOW.outcome("sale")
    assert sale is not None
    check_template("Hei {name}, {price_plan} i {city}", crm, sale)
    with pytest.raises(Invalid, match=r"unknown field '\{age\}'"):
        check_template("Hei {age}", crm, sale)
    text = render(
        "Hei {name} ({phone}) {vip} {missing}",
        name="Kari",
        external_id="1",
        email=None,
        phones=[" ", "+4790000000"],
        info={"vip": True},
        details={},
    )
    assert text == "Hei Kari (+4790000000) ja "
