"""The console's Workers page (issue 23) in Chromium, against an embedded `serve` with a
real `arcp-grpc worker` child: the empty state, then the worker with its agents and
versions, its slots in use while it runs a job, its library and since when it is
connected; the empty state again once it is gone. It fits a phone and the keyboard
reaches it."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.gateway.conftest import WorkerStarter
from tests.gateway.console_browser import SAFETY_MS, Deployment, in_page, sign_in
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.timeout(120)

EMPTY = "no worker is connected"


async def _signed_in(
    browser: Browser, serve: ServeProcess, errors: list[str], fragment: str = ""
) -> Page:
    """A tab signed in to `serve`'s console with its dev token, at `fragment`."""
    deployment = Deployment("embedded", serve.info["console"], serve.token, serve, (), serve)
    return await sign_in(browser, deployment, errors, fragment)


async def test_a_worker_shows_with_its_agents_and_slots_until_it_goes(
    browser: Browser,
    worker_serve: ServeProcess,
    start_workers: WorkerStarter,
    page_errors: list[str],
) -> None:
    page = await _signed_in(browser, worker_serve, page_errors, "#/workers")
    await expect(page.locator("#workers tbody")).to_have_text(EMPTY, timeout=SAFETY_MS)

    worker = await start_workers("--slots", "2")  # the page refreshes by itself
    row = page.locator("#workers tr[data-worker=worker-a]")
    await expect(row).to_have_count(1, timeout=SAFETY_MS)
    await expect(row.locator("li[data-agent=remote-echo] .versions")).to_have_text("1.0.0")
    await expect(row.locator("li[data-agent=remote-idle]")).to_have_count(1)
    await expect(row.locator("td.slots")).to_have_text("0/2")
    await expect(row.locator("td.library")).to_have_text(re.compile(r"^arcp-grpc-python/\d"))
    await expect(row.locator("td.node")).to_have_text("this node (no cluster)")
    connected = row.locator("td.connected time")
    await expect(connected).to_have_text(re.compile(r"^(just now|\d+ (s|min) ago)$"))
    title = await connected.get_attribute("title")
    assert title is not None
    assert title.endswith("Z)")  # the absolute time on hover, to the millisecond

    (job_id,) = await in_page(page, [{"agent": "remote-idle", "input": {}}])
    await expect(row.locator("td.slots")).to_have_text("1/2", timeout=SAFETY_MS)
    await page.evaluate("id => arcpConsole.session.request('job.cancel', {job_id: id})", job_id)
    await expect(row.locator("td.slots")).to_have_text("0/2", timeout=SAFETY_MS)

    worker.stop()  # killed: its stream breaks and the core forgets it
    await expect(page.locator("#workers tbody")).to_have_text(EMPTY, timeout=SAFETY_MS)


async def test_the_page_fits_a_phone_and_the_keyboard_reaches_it(
    browser: Browser,
    worker_serve: ServeProcess,
    start_workers: WorkerStarter,
    page_errors: list[str],
) -> None:
    await start_workers()
    page = await _signed_in(browser, worker_serve, page_errors)
    await page.set_viewport_size({"width": 400, "height": 800})
    await page.focus("nav a[href='#/workers']")
    await page.keyboard.press("Enter")
    await expect(page.locator("#workers tr[data-worker=worker-a]")).to_be_visible(timeout=SAFETY_MS)
    await expect(page.locator("nav a[href='#/workers']")).to_have_attribute("aria-current", "page")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 400
    name = await page.evaluate("document.getElementById('workers').getAttribute('aria-labelledby')")
    await expect(page.locator(f"#{name}")).to_have_text("Workers")
