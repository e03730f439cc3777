"""Take the README's console screenshots: the jobs list, a job page, Nodes and Agents.

Starts a real deployment (the browser tests' `tests.gateway.console_browser`), runs a
few demo jobs through the console's own session, and saves PNGs from Debian's
Chromium into docs/. With `--postgres URL` the deployment is a two-node cluster
behind a gateway (on a fresh schema, dropped afterwards), so the Nodes page shows two.

    .venv/bin/python scripts/console_screenshots.py [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the browser tests' deployment helpers

from playwright.async_api import Page, ViewportSize, async_playwright, expect  # noqa: E402

from tests.conftest import postgres_schema  # noqa: E402
from tests.gateway.console_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SAFETY_MS,
    deployed,
    in_page,
    sign_in,
)

DOCS = ROOT / "docs"
SIZE: ViewportSize = {"width": 1200, "height": 760}
JOBS = [
    {"agent": "echo", "input": {"n": 1}},
    {"agent": "greeter", "input": {"name": "Ada"}},
    {"agent": "counter", "input": {"steps": 12, "interval": 0.05}},
    {"agent": "counter", "input": {"steps": -1}},
    {"agent": "report", "input": {"sections": 3}},
    {
        "agent": "delegator",
        "input": {"hello": "child"},
        "lease_request": {"agent.delegate": ["echo"]},
    },
    {"agent": "counter", "input": {"steps": 10000, "interval": 0.5}},
]
SPENDER = {
    "agent": "spender",
    "input": {"cost_per_call": 0.25},
    "lease_request": {"tool.call": ["search"], "cost.budget": ["USD:1.00"]},
}


async def shoot(page: Page, fragment: str, ready: str, name: str) -> None:
    await page.goto(page.url.split("#")[0] + fragment)
    await expect(page.locator(ready).first).to_be_visible(timeout=SAFETY_MS)
    await page.wait_for_timeout(500)  # let the charts and relative times settle
    await page.screenshot(path=str(DOCS / name), full_page=True)
    print(f"wrote docs/{name}")


async def main(postgres: str) -> None:
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = await stack.enter_async_context(postgres_schema(postgres)) if postgres else ""
        deployment = stack.enter_context(
            deployed("cluster" if postgres else "embedded", workdir, url)
        )
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.push_async_callback(browser.close)
        errors: list[str] = []
        page = await sign_in(browser, deployment, errors)
        await page.set_viewport_size(SIZE)
        await in_page(page, JOBS)
        (spender,) = await in_page(page, [SPENDER])
        await page.wait_for_timeout(1500)  # the short jobs end; the long one runs on
        await shoot(page, "#/jobs", "#jobs tbody tr[data-job-id]", "console-jobs.png")
        await shoot(page, f"#/jobs/{spender}", "#job-status [data-status=success]", "console.png")
        await shoot(page, "#/nodes", "#nodes tbody tr", "console-nodes.png")
        await shoot(page, "#/agents", "#agents tbody tr", "console-agents.png")
        if errors:
            raise SystemExit(f"the page reported errors: {errors}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL: two nodes")
    asyncio.run(main(parser.parse_args().postgres))
