"""A supervisor runs a mass outcome from the page (rule 19): filter, preview, confirm, then the
progress bar fills from the job's events and the report says what was done (rule 21)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playwright.async_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_kit import WAIT_MS, start_list

JOB_MS = 30_000
"""Bound on a small job's whole run, started on the page's node."""


async def test_supervisor_runs_a_mass_outcome_and_sees_progress_and_report(tenant, log_in):
    t = await tenant(agents=1, customers=5)
    agent = await log_in(t.agents[0])
    held = await start_list(agent, t.assignment_name)  # one customer is selected: skipped

    page = await log_in(t.supervisor)
    await expect(page).to_have_url(re.compile(r"/supervisor\.html$"))
    await page.get_by_role("tab", name="Bulk operations").click()
    panel = page.get_by_role("tabpanel", name="Bulk operations")
    await expect(panel.get_by_label("List", exact=True)).to_have_value(str(t.assignment_id))
    await expect(panel.get_by_role("listitem").first).to_have_text(
        "No bulk operations on this list yet.", timeout=WAIT_MS
    )

    await panel.get_by_label("Available", exact=True).check()
    await panel.get_by_role("button", name="Add a condition").click()
    await panel.get_by_label("Info field (condition 1)").select_option(label="Municipality")
    await panel.get_by_label("Value", exact=True).fill("Bergen")
    await panel.get_by_role("button", name="Preview").click()
    result = panel.get_by_role("status")
    await expect(result).to_contain_text("5 customers match.", timeout=WAIT_MS)
    await expect(result).to_contain_text("1 of them are selected right now")

    await panel.get_by_label("Outcome", exact=True).select_option(label="Sale")
    await panel.get_by_label("Price plan").fill("Gold")
    await panel.get_by_role("button", name="Start…").click()
    dialog = page.get_by_role("dialog", name="Start the bulk operation?")
    await expect(dialog).to_contain_text("Register Sale on 5 customers.")
    await expect(dialog).to_contain_text("1 selected customers will be skipped.")
    await dialog.get_by_role("button", name="Start").click()

    progress = page.get_by_role("progressbar", name="Progress of Mass outcome: Sale")
    await expect(panel.locator(progress)).to_have_attribute("aria-valuenow", "100", timeout=JOB_MS)
    job = panel.get_by_role("listitem").filter(has=progress)
    await expect(job).to_contain_text("Done")
    await expect(job).to_contain_text("4 of 5 changed; 1 selected")

    # The agent's customer was left alone; the others are sold.
    await expect(agent.locator("#screen-view #screen-title")).to_have_text(held)
