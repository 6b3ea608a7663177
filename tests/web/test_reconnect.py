"""Reload and network loss put the agent back into the same customer screen (rule 9)."""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.async_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_kit import WAIT_MS, save_outcome, shown_customer, start_list

RECONNECT_MS = 15_000
"""The backoff's first steps are well under this; it bounds the wait, it is not a target."""


async def test_reload_returns_to_the_same_customer_screen(tenant, log_in):
    t = await tenant(agents=1, customers=3)
    page = await log_in(t.agents[0])
    customer = await start_list(page, t.assignment_name)
    await page.reload()
    assert await shown_customer(page) == customer
    await save_outcome(page, "Sale", **{"Price plan": "Fixed"})  # the token still works
    await expect(page.locator("#screen-title")).not_to_have_text(customer, timeout=WAIT_MS)


async def test_network_drop_shows_a_banner_and_comes_back_to_the_same_screen(tenant, log_in):
    t = await tenant(agents=1, customers=3)
    page = await log_in(t.agents[0])
    customer = await start_list(page, t.assignment_name)
    field = page.locator("#info-form").get_by_label("Municipality")
    await field.fill("Typed while offline")

    banner = page.locator("#conn-banner")
    await page.context.set_offline(True)
    await expect(banner).to_be_visible(timeout=WAIT_MS)
    await expect(banner).to_contain_text("offline")
    await page.context.set_offline(False)
    await expect(banner).to_be_hidden(timeout=RECONNECT_MS)

    assert await shown_customer(page) == customer
    await expect(field).to_have_value("Typed while offline")  # same screen, input kept
    await save_outcome(page, "Sale", **{"Price plan": "Fixed"})
    await expect(page.locator("#screen-title")).not_to_have_text(customer, timeout=WAIT_MS)


async def test_server_restart_reconnects_resumes_and_reopens_the_screen(tenant, log_in, web_server):
    t = await tenant(agents=1, customers=3)
    page = await log_in(t.agents[0])
    customer = await start_list(page, t.assignment_name)
    banner = page.locator("#conn-banner")
    web_server.terminate()  # closes the WebSocket with 1012 and a retry hint
    try:
        await expect(banner).to_contain_text("Connection lost", timeout=WAIT_MS)
    finally:
        web_server.start()
    await expect(banner).to_be_hidden(timeout=RECONNECT_MS)
    assert await shown_customer(page) == customer
    await page.keyboard.press("Alt+M")
    await expect(page.get_by_role("heading", name="My Work", level=1)).to_be_visible()
    await page.get_by_role("button", name=f"Customer: {customer}").click()
    assert await shown_customer(page) == customer
