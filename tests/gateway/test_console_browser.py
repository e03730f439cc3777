"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Each test runs against the embedded `serve` (core and gateway in one process)
and against a split deployment (`serve core` + `serve gateway`), both real
child processes on 127.0.0.1 port 0. The page is used as a person would use
it: sign in with the token, submit from the form, read the job page. Waits are
bounded by `SAFETY`, a safety net that never decides what a test checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.gateway.console_browser import SAFETY_MS as SAFETY
from tests.gateway.console_browser import Deployment, finished, job_seqs, sign_in, submit
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.timeout(90)


async def test_sign_in_keeps_the_token_out_of_urls(page: Page, deployment: Deployment) -> None:
    assert deployment.token not in page.url
    stored = await page.evaluate("sessionStorage.getItem('arcp-console.token')")
    assert stored == deployment.token


async def test_counter_progress_bar_reaches_the_end(page: Page) -> None:
    await submit(page, "counter", {"steps": 8, "interval": 0.02})
    await finished(page, "success")
    bar = page.locator("#progress")
    assert await bar.evaluate("bar => [bar.value, bar.max]") == [8, 8]
    await expect(page.locator("#progress-text")).to_contain_text("8/8 steps")
    assert await job_seqs(page) == list(range(1, 10))  # a log line, then 8 progress events
    await expect(page.locator("#result")).to_contain_text('"count": 8')


async def test_streamed_result_is_shown_and_downloadable(page: Page, tmp_path: Path) -> None:
    """§8.4: the result arrives as result_chunk events, then a job.result naming it."""
    await submit(page, "report", {"sections": 3})
    await finished(page, "success")
    expected = "".join(f"## Section {n}\n\nFindings for section {n}.\n\n" for n in range(1, 4))
    assert await page.locator("#streamed").text_content() == expected
    assert await page.locator("#events tr[data-kind=result_chunk]").count() >= 1
    async with page.expect_download(timeout=SAFETY) as download_info:
        await page.click("#download")
    download = await download_info.value
    saved = tmp_path / "result.txt"
    await download.save_as(saved)
    assert saved.read_bytes().decode() == expected


async def test_budget_remaining_follows_the_metric(page: Page) -> None:
    """§9.6: `cost.budget.remaining` metrics drive the gauge; the demo spender stops at 0."""
    lease = json.dumps({"tool.call": ["search"], "cost.budget": ["USD:1.00"]})
    await submit(page, "spender", {"cost_per_call": 0.25}, lease)
    await finished(page, "success")
    await expect(page.locator("#budget")).to_have_text("Budget remaining: USD 0.00")
    await expect(page.locator("#result")).to_contain_text('"calls": 4')


async def test_cancel_from_the_job_page(page: Page) -> None:
    await submit(page, "counter", {"steps": 1000, "interval": 0.05})
    await expect(page.locator("#events tr[data-kind=progress]").first).to_be_visible(timeout=SAFETY)
    await page.click("#cancel")
    await page.click("#confirm-yes")
    await finished(page, "cancelled")
    await expect(page.locator("#error-code")).to_have_text("CANCELLED")
    await expect(page.locator("#cancel")).to_be_hidden()


async def test_an_error_shows_its_code(page: Page) -> None:
    await submit(page, "counter", {"steps": -1})
    await finished(page, "error")
    await expect(page.locator("#error-code")).to_have_text("INVALID_REQUEST")


async def test_a_refused_submit_is_shown_on_the_form(page: Page) -> None:
    await page.click("a[href='#/submit']")
    await page.fill("#input", "{not json")
    await page.click("#submit button[type=submit]")
    await expect(page.locator("#submit .problem")).to_contain_text("not valid JSON")
    await page.fill("#input", "{}")
    await page.fill("#lease", json.dumps({"fs.write": "/etc"}))  # patterns are a list (§9.2)
    await page.click("#submit button[type=submit]")
    await expect(page.locator("#submit .problem")).to_contain_text(
        "INVALID_REQUEST", timeout=SAFETY
    )


async def test_list_shows_jobs_filtered_and_paged(page: Page) -> None:
    ids = [await submit(page, "echo", {"n": n}) for n in range(3)]
    await finished(page, "success")
    counter = await submit(page, "counter", {"steps": 1, "interval": 0})
    await finished(page, "success")
    await page.click("a[href='#/jobs']")
    rows = page.locator("#jobs tbody tr[data-job-id]")
    await expect(rows).to_have_count(4, timeout=SAFETY)
    assert await rows.first.get_attribute("data-job-id") == counter  # newest first
    await page.select_option("#filter-agent", "echo")
    await expect(rows).to_have_count(3, timeout=SAFETY)
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert sorted(shown) == sorted(ids)
    await expect(page.locator("#jobs tbody")).to_contain_text("echo@1.0.0")
    await page.select_option("#filter-status", "cancelled")
    await expect(page.locator("#jobs tbody")).to_contain_text("No jobs match.", timeout=SAFETY)


async def test_the_list_pages_by_cursor(page: Page) -> None:
    """§6.6: twenty jobs a page; Older follows `next_cursor`, Newer goes back."""
    submitted = await page.evaluate(
        """async () => {
            const ids = [];
            for (let n = 0; n < 23; n += 1) {
                const reply = await arcpConsole.session.request(
                    "job.submit", {agent: "echo", input: {n}});
                ids.push(reply.payload.job_id);
            }
            return ids;
        }"""
    )
    rows = page.locator("#jobs tbody tr[data-job-id]")
    await expect(rows).to_have_count(20, timeout=SAFETY)
    assert await rows.first.get_attribute("data-job-id") == submitted[-1]  # newest first
    await page.click("#older")
    await expect(rows).to_have_count(3, timeout=SAFETY)
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert shown == submitted[2::-1]
    assert await page.locator("#older").is_disabled()
    await page.click("#newer")
    await expect(rows).to_have_count(20, timeout=SAFETY)


async def test_a_job_submitted_elsewhere_is_watched_with_its_history(
    page: Page, browser: Browser, deployment: Deployment, page_errors: list[str]
) -> None:
    """A second tab is a new session: it subscribes with history (§7.6) and sees it all."""
    job_id = await submit(page, "counter", {"steps": 5, "interval": 0.01})
    await finished(page, "success")
    other = await sign_in(browser, deployment, page_errors)
    await expect(other.locator(f"#jobs tr[data-job-id='{job_id}']")).to_be_visible(timeout=SAFETY)
    await other.click(f"a[href='#/jobs/{job_id}']")
    await finished(other, "success")
    assert await job_seqs(other) == list(range(1, 7))
    await expect(other.locator("#cancel")).to_be_hidden()


async def test_a_dropped_socket_resumes_without_losing_or_repeating_events(page: Page) -> None:
    """§6.3: the page resumes with its token and last_event_seq; events emitted while
    it was away are replayed once, and nothing it already had comes again."""
    await submit(page, "counter", {"steps": 40, "interval": 0.05})
    await expect(page.locator("#events tr[data-kind=progress]").nth(2)).to_be_visible(
        timeout=SAFETY
    )
    await page.evaluate("arcpConsole.dropSocket()")
    await finished(page, "success")
    assert await page.evaluate("arcpConsole.session.reconnects") >= 1
    assert await job_seqs(page) == list(range(1, 42))
    await expect(page.locator("#progress-text")).to_contain_text("40/40 steps")


@pytest.mark.parametrize("deployment", ["split"], indirect=True)
async def test_a_restarted_gateway_is_followed(page: Page, deployment: Deployment) -> None:
    """The gateway process goes away mid-job and another takes its port: the page
    resumes through it (the core holds the session, DESIGN.md "Shape"). Split only:
    the embedded process has no gateway to restart without its core."""
    port = deployment.console.split(":")[2].split("/")[0]
    await submit(page, "counter", {"steps": 60, "interval": 0.05})
    await expect(page.locator("#events tr[data-kind=progress]").nth(2)).to_be_visible(
        timeout=SAFETY
    )
    code, _, _ = deployment.gateway.terminate()
    assert code == 0
    await expect(page.locator("#connection")).to_have_text("reconnecting", timeout=SAFETY)
    replacement = ServeProcess(
        deployment.gateway.workdir,
        *deployment.gateway_args,
        "--gateway-port",
        port,
        "--no-metrics",
    )
    try:
        replacement.start()
        await finished(page, "success")
        assert await job_seqs(page) == list(range(1, 62))
    finally:
        replacement.stop()
