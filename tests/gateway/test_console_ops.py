"""The console's Nodes and Agents pages in Chromium, against the embedded `serve` and a
two-node cluster behind a gateway: each node's state and running jobs (a node that
dies shows so), and per agent the last hour's jobs, failure rate and percentiles
with small charts. Both stay within a phone's width."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.gateway.console_browser import SAFETY_MS, Deployment, in_page

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("deployment", ["embedded", "cluster"], indirect=True),
]


async def _running_total(page: Page, total: int) -> None:
    """Wait until the Nodes table counts `total` running jobs over all nodes."""
    await page.wait_for_function(
        """total => [...document.querySelectorAll('#nodes td.running')]
            .reduce((sum, cell) => sum + Number(cell.textContent), 0) === total""",
        arg=total,
        timeout=SAFETY_MS,
    )


async def test_nodes_show_their_state_and_running_jobs(page: Page, deployment: Deployment) -> None:
    (job_id,) = await in_page(page, [{"agent": "counter", "input": {"steps": 10_000}}])
    await page.click("nav a[href='#/nodes']")
    rows = page.locator("#nodes tbody tr")
    expected = 2 if deployment.cluster else 1
    await expect(rows).to_have_count(expected, timeout=SAFETY_MS)
    await expect(page.locator("#nodes tr[data-state=alive]")).to_have_count(
        expected, timeout=SAFETY_MS
    )
    await expect(page.locator("#nodes")).to_contain_text("(answered this page)", timeout=SAFETY_MS)
    await _running_total(page, 1)
    await page.evaluate("id => arcpConsole.session.request('job.cancel', {job_id: id})", job_id)
    await _running_total(page, 0)
    if deployment.cluster is None:
        return
    label = "node-b"
    await expect(page.locator("#nodes")).to_contain_text(label, timeout=SAFETY_MS)
    deployment.cluster.b.stop()  # killed: node a declares it dead once it is silent
    dead = page.locator("#nodes tr[data-state=dead]")
    await expect(dead).to_have_count(1, timeout=SAFETY_MS)
    await expect(dead.locator(".node-label")).to_have_text(label, timeout=SAFETY_MS)
    await expect(page.locator("#nodes tr[data-state=alive] .node-label")).to_have_text(
        "node-a", timeout=SAFETY_MS
    )


async def test_agents_show_rates_failures_and_percentiles_with_charts(page: Page) -> None:
    await in_page(
        page,
        [
            {"agent": "echo", "input": {"n": 1}},
            {"agent": "echo", "input": {"n": 2}},
            {"agent": "counter", "input": {"steps": -1}},
        ],
    )
    await expect(page.locator("#jobs tr[data-status=error]")).to_have_count(1, timeout=SAFETY_MS)
    await expect(page.locator("#jobs tr[data-status=success]")).to_have_count(2, timeout=SAFETY_MS)
    await page.click("nav a[href='#/agents']")
    echo = page.locator("#agents tr[data-agent=echo]")
    await expect(echo.locator("td.jobs")).to_have_text("2", timeout=SAFETY_MS)
    await expect(echo.locator("td.failure-rate")).to_have_text("0.0 %", timeout=SAFETY_MS)
    await expect(echo.locator("td.p50")).to_have_text(re.compile(r"^\d+ ms$"), timeout=SAFETY_MS)
    await expect(echo.locator("td.p95")).to_have_text(re.compile(r"^\d+ ms$"), timeout=SAFETY_MS)
    counter = page.locator("#agents tr[data-agent=counter]")
    await expect(counter.locator("td.failure-rate")).to_have_text("100.0 %", timeout=SAFETY_MS)
    charts = echo.locator("svg.chart")
    await expect(charts).to_have_count(3, timeout=SAFETY_MS)
    values = await charts.first.get_attribute("data-values")
    assert values is not None
    assert sum(int(v) for v in values.split(",")) == 2  # twelve five-minute slices
    assert len(values.split(",")) == 12
    await expect(echo.locator("svg.chart rect.spark-jobs")).to_have_count(1, timeout=SAFETY_MS)
    label = await charts.first.get_attribute("aria-label")
    assert label is not None
    assert label.startswith("echo: jobs per 5 minutes: ")
    await expect(page.locator("#agents tr[data-agent=greeter] td.jobs")).to_have_text(
        "0", timeout=SAFETY_MS
    )


@pytest.mark.parametrize("route", ["#/nodes", "#/agents"])
async def test_the_pages_fit_a_phone(page: Page, route: str) -> None:
    await page.set_viewport_size({"width": 400, "height": 800})
    await page.goto(page.url.split("#")[0] + route)
    await expect(page.locator("main table tbody tr").first).to_be_visible(timeout=SAFETY_MS)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 400
