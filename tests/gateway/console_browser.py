"""The console in a real headless Chromium (Debian's `chromium`, driven by Playwright):
the deployments it is tested against and what a test does with the page.

Deployments are real child processes on 127.0.0.1 port 0: `embedded` (core and
gateway in one `serve`), `split` (`serve core` + `serve gateway`) and `cluster` (two
nodes on one PostgreSQL schema, a `serve gateway` in front of both). The page is used
as a person would use it. Waits are bounded by `SAFETY_MS`, a safety net that never
decides what a test checks. The fixtures (`deployment`, `browser`, `page`) are in
`tests/gateway/conftest.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.cluster.nodes import Cluster, running_cluster, write_cluster_config
from tests.serve_process import ServeProcess

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "JOB_ID",
    "SAFETY_MS",
    "Deployment",
    "deployed",
    "finished",
    "in_page",
    "job_seqs",
    "sign_in",
    "submit",
]

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by scripts/test; never downloaded
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SAFETY_MS = 30_000  # milliseconds
JOB_ID = re.compile(r"^job_[0-9A-Z]{26}$")


@dataclass
class Deployment:
    """Where the console is served, the token that signs in to it, and a core's gRPC
    address (for the CLI: jobs submitted outside the console)."""

    kind: str
    console: str
    token: str
    gateway: ServeProcess
    gateway_args: tuple[str, ...]
    core: ServeProcess
    cluster: Cluster | None = None

    def cli(self, *args: str) -> Any:
        """`arcp-grpc ARGS --json` against a core as this deployment's principal; the
        parsed JSON lines."""
        done = self.core.cli(*args, "--token", self.token, "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@contextmanager
def deployed(kind: str, tmp_path: Path, store_url: str = "") -> Iterator[Deployment]:
    """A running deployment of `kind`; every process stopped at the end."""
    with ExitStack() as stack:

        def start(workdir: Path, *args: str) -> ServeProcess:
            workdir.mkdir(exist_ok=True)
            process = ServeProcess(workdir, *args, "--no-metrics")
            stack.callback(process.stop)
            process.start()
            return process

        if kind == "embedded":
            both = start(tmp_path, "--grpc-port", "0", "--gateway-port", "0")
            yield Deployment(kind, both.info["console"], both.token, both, (), both)
        elif kind == "split":
            core = start(tmp_path / "core", "core", "--grpc-port", "0")
            args = ("gateway", "--core", core.info["grpc"])
            gateway = start(tmp_path / "gateway", *args, "--gateway-port", "0")
            yield Deployment(kind, gateway.info["console"], core.token, gateway, args, core)
        else:
            config = write_cluster_config(tmp_path, store_url, node_timeout_sec=2.0)
            nodes = stack.enter_context(running_cluster(tmp_path, config))
            cores = f"{nodes.a.info['grpc']},{nodes.b.info['grpc']}"
            args = ("gateway", "--core", cores)
            gateway = start(tmp_path / "gateway", *args, "--gateway-port", "0")
            console = gateway.info["console"]
            yield Deployment(kind, console, "tok-alice", gateway, args, nodes.a, nodes)


async def sign_in(
    browser: Browser, deployment: Deployment, errors: list[str], fragment: str = ""
) -> Page:
    """A new tab signed in to the console (at `fragment`, e.g. `#/nodes`); script
    errors on the page are appended to `errors`."""
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(deployment.console + fragment)
    await page.fill("#token", deployment.token)
    await page.click("#sign-in button[type=submit]")
    await expect(page.locator("#connection")).to_have_text("open", timeout=SAFETY_MS)
    return page


async def submit(page: Page, agent: str, input_value: object, lease: str = "") -> str:
    """Submit from the form; returns the job id the page navigated to."""
    await page.click("nav a[href='#/submit']")
    await page.select_option("#agent", agent)
    await page.fill("#input", json.dumps(input_value))
    await page.fill("#lease", lease)
    await page.click("#submit button[type=submit]")
    await expect(page.locator("#job h2")).to_have_text(JOB_ID, timeout=SAFETY_MS)
    return (await page.locator("#job h2").inner_text()).strip()


async def in_page(page: Page, submissions: list[dict[str, Any]]) -> list[str]:
    """Submit over the page's own ARCP session (`job.submit`, §7.1), without the
    form; the job ids in order."""
    ids: list[str] = await page.evaluate(
        """async (submissions) => {
            const ids = [];
            for (const payload of submissions) {
                const reply = await arcpConsole.session.request("job.submit", payload);
                ids.push(reply.payload.job_id);
            }
            return ids;
        }""",
        submissions,
    )
    return ids


async def job_seqs(page: Page) -> list[int]:
    """The job_seq of every event row the page rendered, in order."""
    cells = await page.locator("#events tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.jobSeq))"
    )
    return [int(seq) for seq in cells]


async def finished(page: Page, status: str) -> None:
    await expect(page.locator(f"#job-status [data-status={status}]")).to_be_visible(
        timeout=SAFETY_MS
    )
