"""The agent page's call panel against a real server whose simulated phone system rings
briefly (conftest.SIMULATED_PHONES): preview calls on the agent's click, progressive calls as
the customer is pushed, busy and no answer move the agent on, the wrap-up timer releases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from web_kit import WAIT_MS, save_outcome, shown_customer, start_list

from domain.db import dnc
from domain.db import tables as t
from domain.model import AssignmentSetup, DialMode

CALL_MS = 10_000
"""Bound on a simulated call reaching a state (it rings for well under a second)."""


def dial_setup(mode: DialMode, **options: object) -> AssignmentSetup:
    """A list whose busy and unanswered customers stay out of the way for an hour."""
    return AssignmentSetup(dial_mode=mode, retry_delay=timedelta(hours=1), **options)


def call_state(page: Page):
    return page.locator("#softphone #call-state")


async def attempts_of(engine: AsyncEngine, owner: int, name: str) -> int:
    async with engine.connect() as conn:
        row = await conn.execute(
            select(t.customers.c.attempts).where(
                t.customers.c.data_owner_id == owner, t.customers.c.name == name
            )
        )
        return int(row.scalar_one())


async def test_preview_call_talks_hangs_up_counts_down_the_wrap_up_and_saves(tenant, log_in):
    shop = await tenant(
        agents=1,
        customers=2,
        setup=dial_setup(DialMode.PREVIEW, wrap_up_seconds=120, talk_timer_seconds=600),
    )
    # The desk's clock is 67 minutes slow: the timers still count in server time.
    page = await log_in(shop.agents[0], clock_skew=-timedelta(minutes=67))
    first = await start_list(page, shop.assignment_name)
    assert first == shop.customers[0]
    phone = page.locator("#softphone")
    await expect(phone.get_by_role("status")).to_have_text("No call")
    hang_up = phone.get_by_role("button", name="Hang up")
    await expect(hang_up).to_be_disabled()

    await phone.get_by_role("button", name="Call", exact=True).click()
    await expect(call_state(page)).to_have_text("Talking", timeout=CALL_MS)
    await expect(hang_up).to_be_enabled()
    await expect(phone.get_by_role("button", name="Call", exact=True)).to_be_disabled()
    await expect(page.locator("#call-timer-label")).to_have_text("Talk time")
    await expect(page.locator("#call-limit")).to_have_text("(talk timer 10:00)")
    # The talk time counts from the server's `since`, once a second.
    ticking = re.compile(r"^0:0[1-9]$")
    await expect(page.locator("#call-timer")).to_have_text(ticking, timeout=CALL_MS)

    # Supervisors count the agent as talking.
    supervisor = await log_in(shop.supervisor, "/supervisor.html")
    talking = supervisor.locator("#presence-summary .state-chip.talking")
    await expect(talking).to_contain_text("Talking", timeout=WAIT_MS)
    await expect(talking.locator("strong")).to_have_text("1", timeout=WAIT_MS)

    await hang_up.click()
    await expect(call_state(page)).to_have_text("Wrap-up · Call ended: answered", timeout=CALL_MS)
    await expect(page.locator("#call-timer-label")).to_have_text("Wrap-up ends in")
    await expect(page.locator("#call-timer")).to_have_text(re.compile(r"^(2:00|1:[0-5]\d)$"))
    await expect(talking.locator("strong")).to_have_text("0", timeout=WAIT_MS)

    # The panel comes back after a reload, timer and all.
    await page.reload()
    assert await shown_customer(page) == first
    await expect(page.locator("#call-timer-label")).to_have_text("Wrap-up ends in", timeout=WAIT_MS)
    await expect(page.locator("#call-timer")).to_have_text(re.compile(r"^(2:00|1:[0-5]\d)$"))

    await save_outcome(page, "Interested")
    await expect(page.locator("#screen-title")).to_have_text(shop.customers[1], timeout=WAIT_MS)
    await expect(call_state(page)).to_have_text("No call", timeout=WAIT_MS)
    await expect(page.locator("#call-timer")).to_have_text("")


async def test_progressive_calls_by_itself_and_busy_or_no_answer_move_on(
    tenant, log_in, engine: AsyncEngine
):
    shop = await tenant(
        agents=1,
        customers=3,
        setup=dial_setup(DialMode.PROGRESSIVE, wrap_up_seconds=120),
        phone_endings=["91", "92", "00"],
    )
    page = await log_in(shop.agents[0])
    await page.get_by_role("button", name=f"Start list work on {shop.assignment_name}").click()
    # The first two are busy and not answered: each registers an attempt and the next customer
    # is pushed, called without a click; the third answers.
    title = page.locator("#screen-view #screen-title")
    await expect(title).to_have_text(shop.customers[2], timeout=CALL_MS)
    await expect(call_state(page)).to_have_text("Talking", timeout=CALL_MS)
    await expect(page.locator("#dial-mode")).to_have_text("Progressive")
    assert await attempts_of(engine, shop.owner, shop.customers[0]) == 1
    assert await attempts_of(engine, shop.owner, shop.customers[1]) == 1

    # The screen is live: its write is accepted (no selection_lost), and the list is empty now.
    await page.get_by_role("button", name="Hang up").click()
    await expect(page.locator("#call-timer-label")).to_have_text("Wrap-up ends in", timeout=CALL_MS)
    await save_outcome(page, "Interested")
    await expect(page.locator("#mywork-view h1")).to_have_text("My Work", timeout=WAIT_MS)
    await expect(page.locator("#notice")).to_contain_text("no available customer")
    # List work ended with the list: a reload lands in My Work, not in "waiting for a call".
    await page.reload()
    await expect(page.locator("#mywork-view h1")).to_have_text("My Work", timeout=WAIT_MS)
    await expect(page.locator("#waiting-view")).to_be_hidden()
    async with engine.connect() as conn:
        status = await conn.execute(
            select(t.customers.c.status).where(
                t.customers.c.data_owner_id == shop.owner,
                t.customers.c.name == shop.customers[2],
            )
        )
        assert status.scalar_one() == "interested"


async def test_wrap_up_timer_releases_the_customer_with_its_own_message(tenant, log_in):
    shop = await tenant(
        agents=1, customers=2, setup=dial_setup(DialMode.PREVIEW, wrap_up_seconds=1)
    )
    page = await log_in(shop.agents[0])
    assert await start_list(page, shop.assignment_name) == shop.customers[0]
    await page.keyboard.press("Alt+C")  # call
    await expect(call_state(page)).to_have_text("Talking", timeout=CALL_MS)
    await page.keyboard.press("Alt+X")  # hang up
    # The wrap-up second runs out: the customer is released, told so (not as a supervisor's
    # release), and the next one is handed out.
    notice = page.locator("#notice")
    await expect(notice).to_contain_text(
        f"The wrap-up time ran out: {shop.customers[0]} was released", timeout=CALL_MS
    )
    await expect(page.locator("#screen-view #screen-title")).to_have_text(shop.customers[1])
    await expect(notice).not_to_contain_text("released this customer")
    await expect(call_state(page)).to_have_text("Ready to call")  # pushed by the dialer


async def test_a_customer_on_the_do_not_call_list_is_not_called(
    tenant, log_in, engine: AsyncEngine
):
    shop = await tenant(agents=1, customers=1, setup=dial_setup(DialMode.PREVIEW))
    page = await log_in(shop.agents[0])
    await start_list(page, shop.assignment_name)
    number = (await page.locator("#phone-link").inner_text()).strip()
    async with engine.begin() as conn:
        await dnc.add(conn, shop.owner, number, datetime.now(UTC))
    await page.locator("#softphone").get_by_role("button", name="Call", exact=True).click()
    await expect(page.locator("#call-message")).to_have_text(
        "Every number of this customer is on the do-not-call list: no call was placed."
    )
    await expect(call_state(page)).to_have_text("No call")

    # The shortcuts are listed in the help.
    await page.keyboard.press("Alt+H")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(shortcuts.locator("tr", has_text="Alt+C")).to_contain_text("Call / hang up")
    await expect(shortcuts.locator("tr", has_text="Alt+X")).to_contain_text("Hang up")


WATCH_VIEWS = """() => {
  window.viewsSeen = [];
  const note = () => {
    for (const view of ["mywork", "waiting", "screen"]) {
      const shown = !document.getElementById(`${view}-view`).hidden;
      if (shown && window.viewsSeen.at(-1) !== view) window.viewsSeen.push(view);
    }
  };
  new MutationObserver(note).observe(document.getElementById("main"), {
    subtree: true, attributes: true, attributeFilter: ["hidden"],
  });
}"""
"""Records every view the page shows from now on, in order (window.viewsSeen)."""


async def test_predictive_agent_waits_for_a_call_between_customers(tenant, log_in):
    shop = await tenant(agents=1, customers=4, setup=dial_setup(DialMode.PREDICTIVE))
    page = await log_in(shop.agents[0])
    start = page.get_by_role("button", name=f"Start list work on {shop.assignment_name}")
    await expect(start).to_be_enabled()
    await page.evaluate(WATCH_VIEWS)
    await start.click()
    title = page.locator("#screen-view #screen-title")
    await expect(title).to_be_visible(timeout=CALL_MS)
    await expect(call_state(page)).to_have_text("Talking", timeout=CALL_MS)
    await expect(page.locator("#dial-mode")).to_have_text("Predictive")
    first = (await title.inner_text()).strip()
    assert first in shop.customers

    await save_outcome(page, "Interested")
    # The next answered call comes in by itself (a waiting view in between, or at once).
    await expect(title).not_to_have_text(first, timeout=CALL_MS)
    await expect(title).to_be_visible()
    await expect(call_state(page)).to_have_text("Talking", timeout=CALL_MS)
    # Not My Work: the page waited for the dialer to connect an answered call.
    views = await page.evaluate("window.viewsSeen")
    assert views[:2] == ["waiting", "screen"], views
    assert "mywork" not in views, views
