"""The console's job page in Chromium, against the embedded `serve` and a two-node
cluster behind a gateway: input, lease, budget and limits; run again; a deep link's
times; parent and children as links with a timeline; the events filtered by kind;
cancel of a job the CLI submitted, with a confirmation; progress coloured by outcome."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.gateway.console_browser import (
    JOB_ID,
    SAFETY_MS,
    Deployment,
    finished,
    sign_in,
    submit,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("deployment", ["embedded", "cluster"], indirect=True),
]


async def _input(page: Page) -> object:
    """The job page's input, once the core's answer has shown it."""
    shown = page.locator("#job-input")
    await expect(shown).not_to_be_empty(timeout=SAFETY_MS)
    return json.loads(await shown.inner_text())


ACCENT = {"cancelled": "rgb(138, 90, 0)", "timed_out": "rgb(179, 38, 30)"}  # console.css


async def test_input_lease_budget_and_limit_are_shown_and_the_job_runs_again(
    page: Page,
) -> None:
    lease = json.dumps({"tool.call": ["search"], "cost.budget": ["USD:1.00"]})
    await page.click("nav a[href='#/submit']")
    await page.select_option("#agent", "spender")
    await page.fill("#input", json.dumps({"cost_per_call": 0.25}))
    await page.fill("#lease", lease)
    await page.fill("#max-runtime", "30")
    await page.click("#submit button[type=submit]")
    await expect(page.locator("#job h2")).to_have_text(JOB_ID, timeout=SAFETY_MS)
    first = (await page.locator("#job h2").inner_text()).strip()
    await finished(page, "success")
    assert await _input(page) == {"cost_per_call": 0.25}
    await expect(page.locator("#job-lease")).to_contain_text("tool.call search", timeout=SAFETY_MS)
    await expect(page.locator("#job-lease")).to_contain_text("cost.budget", timeout=SAFETY_MS)
    await expect(page.locator("#job-max-runtime")).to_have_text("30 s", timeout=SAFETY_MS)
    await expect(page.locator("#budget")).to_have_text(
        "Budget remaining: USD 0.00", timeout=SAFETY_MS
    )

    await page.click("#rerun")  # same agent version, input, lease and limit (§7.1)
    await expect(page.locator("#job h2")).not_to_have_text(first, timeout=SAFETY_MS)
    await finished(page, "success")
    assert await _input(page) == {"cost_per_call": 0.25}
    await expect(page.locator("#job-agent")).to_have_text("spender@1.0.0", timeout=SAFETY_MS)
    await expect(page.locator("#job-max-runtime")).to_have_text("30 s", timeout=SAFETY_MS)
    await expect(page.locator("#result")).to_contain_text('"calls": 4', timeout=SAFETY_MS)


async def test_a_deep_link_shows_when_the_job_ran_and_for_how_long(
    page: Page, browser: Browser, deployment: Deployment, page_errors: list[str]
) -> None:
    job_id = await submit(page, "echo", {"x": 1})
    await finished(page, "success")
    other = await sign_in(browser, deployment, page_errors, f"#/jobs/{job_id}")
    await finished(other, "success")
    await expect(other.locator("#job-submitted time")).to_have_text(
        re.compile(r"^(just now|\d+ s ago)$")
    )
    await expect(other.locator("#job-duration")).to_have_text(
        re.compile(r"^\d+ ms$"), timeout=SAFETY_MS
    )
    assert await _input(other) == {"x": 1}


async def test_delegation_links_parent_and_child_and_draws_both(page: Page) -> None:
    """§10: the delegating job links its child, the child its parent; the timeline
    has a lane for the child."""
    lease = json.dumps({"agent.delegate": ["echo"]})
    parent = await submit(page, "delegator", {"hello": "child"}, lease)
    await finished(page, "success")
    child_link = page.locator("#job-children a")
    await expect(child_link).to_have_count(1, timeout=SAFETY_MS)
    child = (await child_link.inner_text()).strip()
    assert JOB_ID.match(child)
    lane = page.locator(f"#timeline tr[data-lane=child][data-job-id='{child}']")
    await expect(lane).to_have_attribute("data-status", "success", timeout=SAFETY_MS)
    await expect(page.locator("#timeline tr[data-lane=job] rect.bar-success")).to_have_count(
        1, timeout=SAFETY_MS
    )
    await child_link.click()
    await expect(page.locator("#job h2")).to_have_text(child, timeout=SAFETY_MS)
    await finished(page, "success")
    await expect(page.locator("#job-parent a")).to_have_text(parent, timeout=SAFETY_MS)
    assert await _input(page) == {"hello": "child"}


async def test_events_filter_by_kind_and_the_choice_is_in_the_url(page: Page) -> None:
    await submit(page, "counter", {"steps": 5, "interval": 0.01})
    await finished(page, "success")
    rows = page.locator("#events tr")
    await expect(rows).to_have_count(6)  # a log line, then 5 progress events
    await page.select_option("#event-kind", "log")
    await expect(page.locator("#events tr:visible")).to_have_count(1, timeout=SAFETY_MS)
    assert await page.locator("#events tr:visible").get_attribute("data-kind") == "log"
    assert page.url.endswith("?kind=log")
    await expect(page.locator("#timeline tr[data-lane=progress] rect.tick")).to_have_count(
        5, timeout=SAFETY_MS
    )
    await page.reload()
    await expect(page.locator("#events tr")).to_have_count(6, timeout=SAFETY_MS)
    await expect(page.locator("#events tr:visible")).to_have_count(1, timeout=SAFETY_MS)
    await expect(page.locator("#event-kind")).to_have_value("log", timeout=SAFETY_MS)


async def test_a_job_from_the_cli_is_cancelled_after_a_confirmation(
    page: Page, deployment: Deployment
) -> None:
    """However it was submitted, its principal cancels it here (JobService, §7.4)."""
    (submitted,) = deployment.cli("submit", "counter", "--input", '{"steps": 10000}')
    job_id = submitted["job_id"]
    await page.goto(f"{deployment.console}#/jobs/{job_id}")
    await expect(page.locator("#events tr[data-kind=progress]").first).to_be_visible(
        timeout=SAFETY_MS
    )
    await page.click("#cancel")
    await page.keyboard.press("Escape")  # dismissed: nothing happens
    await expect(page.locator("#confirm")).to_have_count(0, timeout=SAFETY_MS)
    await expect(page.locator("#job-status [data-status=running]")).to_be_visible(timeout=SAFETY_MS)
    await page.click("#cancel")
    await page.click("#confirm-yes")
    await finished(page, "cancelled")
    await expect(page.locator("#error-code")).to_have_text("CANCELLED", timeout=SAFETY_MS)
    await expect(page.locator("#cancel")).to_be_hidden(timeout=SAFETY_MS)
    bar = page.locator("#progress")
    await expect(bar).to_have_attribute("data-outcome", "cancelled", timeout=SAFETY_MS)
    assert await bar.evaluate("b => getComputedStyle(b).accentColor") == ACCENT["cancelled"]


async def test_progress_turns_red_when_the_job_times_out(page: Page) -> None:
    await page.click("nav a[href='#/submit']")
    await page.select_option("#agent", "counter")
    await page.fill("#input", json.dumps({"steps": 10000, "interval": 0.05}))
    await page.fill("#max-runtime", "1")
    await page.click("#submit button[type=submit]")
    await finished(page, "timed_out")
    bar = page.locator("#progress")
    await expect(bar).to_have_attribute("data-outcome", "timed_out", timeout=SAFETY_MS)
    assert await bar.evaluate("b => getComputedStyle(b).accentColor") == ACCENT["timed_out"]
