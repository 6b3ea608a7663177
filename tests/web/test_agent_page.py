"""Agents working a list in the browser: the next right customer, outcomes, next actions."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_kit import WAIT_MS, save_outcome, shown_customer, start_list


async def test_two_agents_working_one_list_never_see_the_same_customer(tenant, log_in):
    t = await tenant(agents=2, customers=8)
    a, b = await asyncio.gather(log_in(t.agents[0]), log_in(t.agents[1]))
    first = await asyncio.gather(start_list(a, t.assignment_name), start_list(b, t.assignment_name))
    assert first[0] != first[1]
    seen = set(first)
    shown = list(first)
    for _round in range(3):
        # Both save at once; each gets the next right customer without another click.
        await asyncio.gather(
            save_outcome(a, "Sale", **{"Price plan": "Fixed"}),
            save_outcome(b, "Sale", **{"Price plan": "Fixed"}),
        )
        for page, before in ((a, shown[0]), (b, shown[1])):
            await expect(page.locator("#screen-title")).not_to_have_text(before, timeout=WAIT_MS)
        shown = [await shown_customer(a), await shown_customer(b)]
        assert shown[0] != shown[1]
        assert not seen & set(shown), f"a customer came twice: {seen & set(shown)}"
        seen |= set(shown)
    assert seen == set(t.customers)


async def test_saving_with_each_next_action_goes_where_the_agent_chose(tenant, log_in):
    t = await tenant(agents=1, customers=4)
    page = await log_in(t.agents[0])
    first = await start_list(page, t.assignment_name)

    next_choices = page.locator('#outcome-form input[name="next"]')
    await expect(next_choices).to_have_count(3)
    await expect(next_choices.first).to_have_value("next_from_list")
    await expect(next_choices.first).to_be_checked()  # the default comes first

    await save_outcome(page, "Interested", "Continue work on this customer", Note="call at 5")
    await expect(page.locator("#screen-status")).to_have_text("Interested", timeout=WAIT_MS)
    assert await shown_customer(page) == first
    await expect(page.locator("#screen-view .history")).to_contain_text("Outcome")

    await save_outcome(
        page, "Sale", "Get the next customer from the list", **{"Price plan": "Flex"}
    )
    await expect(page.locator("#screen-title")).not_to_have_text(first, timeout=WAIT_MS)
    second = await shown_customer(page)
    await expect(page.locator("#screen-status")).to_have_text("Available")

    await save_outcome(
        page, "Sale", "Pick the next customer from My Work", **{"Price plan": "Flex"}
    )
    await expect(page.get_by_role("heading", name="My Work", level=1)).to_be_visible(
        timeout=WAIT_MS
    )
    await expect(page.locator("#screen-view")).to_be_hidden()
    await expect(page.locator("#nav-customer")).to_be_hidden()
    assert second != first


async def test_required_outcome_details_are_asked_for_before_anything_is_sent(tenant, log_in):
    t = await tenant(agents=1, customers=2)
    page = await log_in(t.agents[0])
    name = await start_list(page, t.assignment_name)
    await save_outcome(page, "Sale")  # no price plan
    await expect(page.locator("#screen-error")).to_have_text("Price plan is required.")
    assert await shown_customer(page) == name


async def test_keyboard_no_answer_and_call_back_later_register_attempts(tenant, log_in):
    t = await tenant(agents=1, customers=3)
    page = await log_in(t.agents[0])
    first = await start_list(page, t.assignment_name)

    await page.get_by_label("Continue work on this customer").check()
    await page.keyboard.press("Alt+N")
    await expect(page.locator("#screen-view .history li").first).to_contain_text(
        "No answer", timeout=WAIT_MS
    )
    assert await shown_customer(page) == first

    await page.get_by_label("Call back at").fill("2099-01-02T10:30")
    await page.get_by_role("button", name="Call back later").click()  # default: next from list
    await expect(page.locator("#screen-title")).not_to_have_text(first, timeout=WAIT_MS)

    await page.keyboard.press("Alt+H")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_dialog).to_be_visible()
    await expect(help_dialog).to_contain_text("Save the outcome")
    await page.keyboard.press("Escape")
    await expect(help_dialog).to_be_hidden()


async def test_info_fields_are_edited_on_the_customer_screen(tenant, log_in):
    t = await tenant(agents=1, customers=2)
    page = await log_in(t.agents[0])
    await start_list(page, t.assignment_name)
    field = page.locator("#info-form").get_by_label("Municipality")
    await expect(field).to_have_value("Bergen")
    await field.fill("Tromsø")
    # A field the CRM defines but the customer has no value for: shown with its label and type.
    since = page.locator("#info-form").get_by_label("Customer since")
    await expect(since).to_have_attribute("type", "date")
    await expect(since).to_have_value("")
    await since.fill("2024-05-17")
    await page.get_by_role("button", name="Save fields").click()
    await expect(page.locator("#info-status")).to_have_text("Fields saved.", timeout=WAIT_MS)
    await page.reload()
    await expect(page.locator("#info-form").get_by_label("Customer since")).to_have_value(
        "2024-05-17", timeout=WAIT_MS
    )
