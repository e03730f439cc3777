"""The console's jobs list in Chromium, against the embedded `serve` and a two-node
cluster behind a gateway: search, filters, sorting and paging in the URL; relative
times with the absolute one on hover; millisecond durations; bulk cancel with a
confirmation, also of jobs submitted from the CLI; phone width and the keyboard."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest
from playwright.async_api import Browser, Page, expect

from tests.gateway.console_browser import SAFETY_MS, Deployment, in_page, sign_in

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("deployment", ["embedded", "cluster"], indirect=True),
]

LONG = {"steps": 10_000, "interval": 0.05}  # runs until cancelled


def _route(page: Page) -> dict[str, str]:
    """The list's state as the URL fragment holds it."""
    fragment = page.url.split("#", 1)[1]
    query = fragment.split("?", 1)[1] if "?" in fragment else ""
    return {key: values[0] for key, values in parse_qs(query).items()}


async def _shows(page: Page, expected: list[str]) -> None:
    """Wait until the table lists exactly `expected`, in this order."""
    await page.wait_for_function(
        """expected => {
            const rows = document.querySelectorAll('#jobs tbody tr[data-job-id]');
            return JSON.stringify([...rows].map(r => r.dataset.jobId)) === JSON.stringify(expected);
        }""",
        arg=expected,
        timeout=SAFETY_MS,
    )


async def test_search_filters_and_sort_live_in_the_url(
    page: Page, browser: Browser, deployment: Deployment, page_errors: list[str]
) -> None:
    echoes = await in_page(page, [{"agent": "echo", "input": {"n": n}} for n in range(3)])
    (failed,) = await in_page(page, [{"agent": "counter", "input": {"steps": -1}}])
    await expect(page.locator("#jobs tbody tr[data-job-id]")).to_have_count(4, timeout=SAFETY_MS)
    await expect(page.locator(f"tr[data-job-id='{failed}']")).to_have_attribute(
        "data-status", "error", timeout=SAFETY_MS
    )

    await page.select_option("#filter-status", "error")
    await _shows(page, [failed])
    assert _route(page) == {"status": "error"}
    await page.select_option("#filter-status", "")
    await page.select_option("#filter-agent", "echo")
    await page.select_option("#filter-since", "15m")  # §6.6 created_after
    await _shows(page, echoes[::-1])  # newest first
    assert _route(page) == {"agent": "echo", "since": "15m"}

    await page.click("th.col-job button.sort")  # newest first, then by id either way
    await page.click("th.col-job button.sort")
    await _shows(page, sorted(echoes))
    assert _route(page) == {"agent": "echo", "since": "15m", "sort": "job", "dir": "asc"}
    await expect(page.locator("th.col-job")).to_have_attribute(
        "aria-sort", "ascending", timeout=SAFETY_MS
    )

    # A shared link opens the same view in another tab (a session of its own).
    other = await sign_in(browser, deployment, page_errors, "#/" + page.url.split("#/", 1)[1])
    await expect(other.locator("#filter-agent")).to_have_value("echo", timeout=SAFETY_MS)
    await _shows(other, sorted(echoes))

    await page.fill("#search", echoes[1])  # a job id: that job alone (GetJob)
    await page.press("#search", "Enter")
    await _shows(page, [echoes[1]])
    assert _route(page)["q"] == echoes[1]
    await page.select_option("#filter-agent", "")
    await page.fill("#search", "count")  # text: job ids and agents containing it
    await page.press("#search", "Enter")
    await _shows(page, [failed])
    await page.fill("#search", "job_00000000000000000000000000")
    await page.press("#search", "Enter")
    await expect(page.locator("#jobs tbody")).to_contain_text("No jobs match.", timeout=SAFETY_MS)


async def test_times_are_relative_with_the_absolute_on_hover_and_durations_in_ms(
    page: Page,
) -> None:
    (job_id,) = await in_page(page, [{"agent": "echo", "input": {}}])
    row = page.locator(f"#jobs tr[data-job-id='{job_id}']")
    await expect(row).to_have_attribute("data-status", "success", timeout=SAFETY_MS)
    submitted = row.locator("td.col-submitted time")
    await expect(submitted).to_have_text(re.compile(r"^(just now|\d+ s ago)$"), timeout=SAFETY_MS)
    title = await submitted.get_attribute("title")
    assert title is not None
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", title)  # to the millisecond
    # An echo takes milliseconds: shown as such, never as "0.0 s".
    await expect(row.locator("td.duration")).to_have_text(
        re.compile(r"^\d+ ms$"), timeout=SAFETY_MS
    )


async def test_bulk_cancel_asks_first_and_reaches_jobs_from_the_cli(
    page: Page, deployment: Deployment
) -> None:
    """§7.4 over ARCP lets only the submitting session cancel; the console cancels any
    job of its principal, here two of its own and one the CLI submitted."""
    own = await in_page(page, [{"agent": "counter", "input": LONG}] * 2)
    (from_cli,) = deployment.cli("submit", "counter", "--input", '{"steps": 10000}')
    cli_id = from_cli["job_id"]
    (spared,) = await in_page(page, [{"agent": "counter", "input": LONG}])
    for job_id in [*own, cli_id, spared]:
        await expect(page.locator(f"tr[data-job-id='{job_id}']")).to_be_visible(timeout=SAFETY_MS)
    for job_id in [*own, cli_id]:
        await page.check(f"tr[data-job-id='{job_id}'] input.pick-job")
    await expect(page.locator("#cancel-selected")).to_have_text(
        "Cancel selected (3)", timeout=SAFETY_MS
    )

    await page.click("#cancel-selected")
    await expect(page.locator("#confirm")).to_be_visible(timeout=SAFETY_MS)
    await expect(page.locator("#confirm-question")).to_contain_text(
        "Cancel 3 running jobs?", timeout=SAFETY_MS
    )
    await page.click("#confirm-no")  # keep them
    await expect(page.locator("#confirm")).to_have_count(0, timeout=SAFETY_MS)
    await page.click("#cancel-selected")
    await page.click("#confirm-yes")
    for job_id in [*own, cli_id]:
        await expect(page.locator(f"tr[data-job-id='{job_id}']")).to_have_attribute(
            "data-status", "cancelled", timeout=SAFETY_MS
        )
    assert await page.locator(f"tr[data-job-id='{spared}']").get_attribute("data-status") in (
        "pending",
        "running",
    )
    await expect(page.locator("#bulk-problem")).to_be_empty(timeout=SAFETY_MS)


async def test_phone_width_and_keyboard(page: Page) -> None:
    """At 400 px nothing scrolls sideways; every control has a label; the keyboard
    reaches a sortable header and sorts with it."""
    await in_page(page, [{"agent": "echo", "input": {"n": n}} for n in range(3)])
    await page.set_viewport_size({"width": 400, "height": 800})
    await expect(page.locator("#jobs tbody tr[data-job-id]")).to_have_count(3, timeout=SAFETY_MS)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 400
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('main input, main select, main button')]
            .filter((el) => !el.labels?.length && !el.getAttribute('aria-label')
                && !el.textContent.trim())
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    await page.focus("th.col-status button.sort")
    await page.keyboard.press("Enter")
    await expect(page.locator("th.col-status")).to_have_attribute(
        "aria-sort", "descending", timeout=SAFETY_MS
    )
    await page.keyboard.press("Enter")
    await expect(page.locator("th.col-status")).to_have_attribute(
        "aria-sort", "ascending", timeout=SAFETY_MS
    )
    # On to the next header shown: agent and submission time are hidden at this width.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.dataset.sort") == "duration"
