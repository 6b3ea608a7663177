"""A supervisor releases an agent's customer: the agent's page leaves the screen at once."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playwright.async_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_kit import WAIT_MS, start_list

KICK_MS = 1000
"""Rule 8: "at once". Bounded wait from the supervisor's click to the agent page's change."""


async def test_supervisor_release_throws_the_agent_out_within_a_second(tenant, log_in):
    t = await tenant(agents=1, customers=3)
    agent = await log_in(t.agents[0])
    supervisor = await log_in(t.supervisor)
    await expect(supervisor).to_have_url(re.compile(r"/supervisor\.html$"))
    customer = await start_list(agent, t.assignment_name)
    # Unsaved input on the screen: an edited field and a chosen outcome.
    await agent.locator("#info-form").get_by_label("Municipality").fill("Unsaved town")
    await agent.locator("#outcome-form").get_by_label("Interested", exact=True).check()

    row = supervisor.locator("#selected-body tr", has_text=customer)
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(row).to_contain_text(t.agents[0].name)
    await expect(row).to_contain_text("Online")
    await row.get_by_role("button", name="Release").click()
    dialog = supervisor.get_by_role("dialog", name="Release the customer?")
    await expect(dialog).to_contain_text(customer)

    await dialog.get_by_role("button", name="Release").click()
    notice = agent.get_by_role("alert").filter(has_text="released this customer")
    await expect(notice).to_contain_text(t.supervisor.name, timeout=KICK_MS)
    await expect(agent.locator("#screen-view")).to_be_hidden(timeout=KICK_MS)

    # Taken to the customer's details; the unsaved input is gone with the screen.
    details = agent.locator("#details-view")
    await expect(details.get_by_role("heading", level=1)).to_have_text(customer)
    await expect(agent.locator("#screen-view input")).to_have_count(0)
    await expect(details.get_by_role("button", name="Select")).to_be_visible(timeout=WAIT_MS)
    await expect(details.locator(".history")).to_contain_text("Released")
    await agent.keyboard.press("Alt+S")  # nothing left to save from
    await expect(agent.locator("#screen-view")).to_be_hidden()
    await expect(row).to_have_count(0, timeout=WAIT_MS)


async def test_supervisor_sees_selections_live_with_presence_and_filter(tenant, log_in):
    t = await tenant(agents=2, customers=4)
    supervisor = await log_in(t.supervisor)
    await expect(supervisor.locator("#selected-body")).to_contain_text(
        "No customer is selected", timeout=WAIT_MS
    )
    board = supervisor.locator("#presence-list")
    await expect(board.locator("li", has_text=t.agents[0].name)).to_contain_text("Offline")

    agent = await log_in(t.agents[0])
    customer = await start_list(agent, t.assignment_name)
    row = supervisor.locator("#selected-body tr", has_text=customer)
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(board.locator("li", has_text=t.agents[0].name)).to_contain_text(
        "Working", timeout=WAIT_MS
    )
    held = row.locator(".held-for")
    first = await held.inner_text()
    await expect(held).not_to_have_text(first, timeout=3000)  # it ticks

    await supervisor.get_by_label("Assignment").select_option(label=t.assignment_name)
    await expect(row).to_be_visible()

    await agent.get_by_label("My status").select_option("paused")
    await expect(board.locator("li", has_text=t.agents[0].name)).to_contain_text(
        "Paused", timeout=WAIT_MS
    )
    await agent.context.close()  # the agent's browser goes away: the selection stays (rule 9)
    await expect(row).to_contain_text("Offline", timeout=8000)
