"""What the browser tests do on the pages, in the words of an agent and a supervisor."""

from __future__ import annotations

from playwright.async_api import Page, expect

WAIT_MS = 5000
"""Bound on waiting for something the page should do promptly (a reply, a render)."""


async def start_list(page: Page, list_name: str) -> str:
    """From My Work, start list work: the next right customer opens without another click."""
    await page.get_by_role("button", name=f"Start list work on {list_name}").click()
    return await shown_customer(page)


async def shown_customer(page: Page) -> str:
    """The name of the customer whose screen is open."""
    title = page.locator("#screen-view #screen-title")
    await expect(title).to_be_visible(timeout=WAIT_MS)
    return (await title.inner_text()).strip()


async def save_outcome(
    page: Page, outcome: str, next_action: str | None = None, **details: str
) -> None:
    """Pick an outcome, fill its details, pick where to go next (None: the default) and save."""
    form = page.locator("#outcome-form")
    await form.get_by_label(outcome, exact=True).check()
    for label, value in details.items():
        await form.get_by_label(label).fill(value)
    if next_action is not None:
        await form.get_by_label(next_action).check()
    await form.get_by_role("button", name="Save outcome").click()
