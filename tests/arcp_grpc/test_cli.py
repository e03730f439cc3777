"""The CLI client against a real core: exit codes follow the terminal status,
ARCP errors print one line with the code, progress renders for a TTY and for
a pipe, and `--json` gives one object per line."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from arcp_grpc._cli_client import WatchPrinter, progress_text
from arcp_grpc.cli import main
from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import events_pb2, jobs_pb2


async def _cli(core: RunningCore, *args: str, token: str = "tok-alice") -> int:
    """`arcp-grpc ARGS` in a worker thread (it is synchronous; the core is on this loop)."""
    argv = [*args, "--address", core.grpc_address, "--token", token]
    return await asyncio.to_thread(main, argv)


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_submit_watch_success_exits_0(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _cli(core, "submit", "greeter", "--input", '{"name": "cli"}', "--watch")
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("accepted job_")
    assert out[0].endswith("(greeter@2.0.0)")
    assert "thought greeting cli politely" in out
    assert json.loads(out[-1]) == {"greeting": "Hello, cli!", "version": "2.0.0"}


async def test_a_failed_job_exits_1_with_its_code(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _cli(core, "submit", "counter", "--input", '{"steps": -1}', "--watch")
    out = capsys.readouterr().out
    assert code == 1
    assert "error job_" in out
    assert ": INVALID_REQUEST: input.steps must be an integer" in out


async def test_a_cancelled_job_exits_3(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cli(core, "submit", "counter", "--input", '{"steps": 1000, "interval": 0.05}', "--json")
    job_id = _lines(capsys.readouterr().out)[0]["job_id"]
    watching = asyncio.create_task(_cli(core, "watch", job_id, "--json"))
    assert await _cli(core, "cancel", job_id, "--reason", "enough", "--json") == 0
    assert await asyncio.wait_for(watching, 30) == 3
    frames = _lines(capsys.readouterr().out)
    acknowledged = {"type": "cancelled", "job_id": job_id}
    assert acknowledged in frames
    # The two commands print concurrently: only the watch's own lines are ordered.
    watched = [frame for frame in frames if frame != acknowledged]
    assert watched[-1]["type"] == "error"
    assert watched[-1]["final_status"] == "JOB_STATUS_CANCELLED"
    assert watched[-1]["error"]["message"] == "enough"


async def test_a_timed_out_job_exits_4(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _cli(
        core,
        "submit",
        "counter",
        "--input",
        '{"steps": 1000, "interval": 0.05}',
        "--max-runtime",
        "1",
        "--watch",
    )
    assert code == 4
    assert ": TIMEOUT: " in capsys.readouterr().out


async def test_watch_after_skips_what_was_seen(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cli(core, "submit", "chatty", "--input", '{"events": 4}', "--watch", "--json")
    frames = _lines(capsys.readouterr().out)
    job_id = frames[0]["job_id"]
    seqs = [int(f["job_seq"]) for f in frames if f["type"] == "event"]
    assert await _cli(core, "watch", job_id, "--after", str(seqs[1]), "--json") == 0
    again = _lines(capsys.readouterr().out)
    assert [int(f["job_seq"]) for f in again if f["type"] == "event"] == seqs[2:]
    assert again[-1]["type"] == "result"


async def test_jobs_filters_and_agents_lists(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    for agent in ("echo", "greeter", "echo"):
        await _cli(core, "submit", agent, "--input", "{}", "--watch")
    capsys.readouterr()
    assert await _cli(core, "jobs", "--agent", "echo", "--json") == 0
    listed = _lines(capsys.readouterr().out)
    assert len(listed) == 2
    assert {j["agent"] for j in listed} == {"echo@1.0.0"}
    assert await _cli(core, "jobs", "--status", "success", "--limit", "1") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert await _cli(core, "agents") == 0
    assert "greeter       1.0.0, 2.0.0 (default)" in capsys.readouterr().out


async def test_arcp_errors_print_code_and_message_not_a_trace(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(core, "watch", "job_missing") == 1
    err = capsys.readouterr().err
    assert err == "arcp-grpc: JOB_NOT_FOUND: job 'job_missing' not found\n"
    assert await _cli(core, "agents", token="tok-mallory") == 1
    assert capsys.readouterr().err.startswith("arcp-grpc: UNAUTHENTICATED: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("submit", "echo", "--input", "{nope"), "--input is not valid JSON"),
        (("submit", "echo", "--lease", '{"tool.call": "x"}'), "--lease must be"),
        (("jobs", "--status", "bogus"), "--status must be one of pending, running"),
    ],
)
async def test_usage_errors_exit_2(
    core: RunningCore, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert await _cli(core, *args) == 2
    assert message in capsys.readouterr().err


def test_no_token_anywhere_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCP_TOKEN", raising=False)
    monkeypatch.delenv("ARCP_DATA_DIR", raising=False)
    assert main(["agents"]) == 2
    assert "no token: pass --token, set ARCP_TOKEN" in capsys.readouterr().err


def test_the_core_unreachable_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "--address", "127.0.0.1:1", "--token", "t"]) == 1
    assert capsys.readouterr().err.startswith("arcp-grpc: cannot reach the core at 127.0.0.1:1")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(current: int, total: int) -> events_pb2.JobEvent:
    event = events_pb2.JobEvent(job_id="job_1")
    event.progress.current = current
    event.progress.total = total
    event.progress.units = "steps"
    return event


def _log(message: str) -> events_pb2.JobEvent:
    event = events_pb2.JobEvent(job_id="job_1")
    event.log.level = events_pb2.LOG_LEVEL_WARN
    event.log.message = message
    return event


def _success() -> jobs_pb2.JobOutcome:
    outcome = jobs_pb2.JobOutcome()
    outcome.result.job_id = "job_1"
    outcome.result.final_status = jobs_pb2.JOB_STATUS_SUCCESS
    outcome.result.value.number_value = 2
    return outcome


def test_on_a_tty_the_bar_redraws_one_line() -> None:
    out = _Terminal()
    printer = WatchPrinter(out, width=4)
    for event in (_progress(1, 2), _progress(2, 2), _log("careful"), _progress(2, 2)):
        printer.event(event)
    assert printer.outcome(_success()) == 0
    assert out.getvalue() == (
        "\r[##..] 1/2 steps\x1b[K\r[####] 2/2 steps\x1b[K\n"
        "log [warn] careful\n"
        "\r[####] 2/2 steps\x1b[K\n"
        "success job_1\n2\n"
    )


def test_in_a_pipe_progress_is_plain_lines() -> None:
    out = io.StringIO()
    printer = WatchPrinter(out, width=4)
    printer.event(_progress(1, 2))
    printer.event(_log("careful"))
    assert out.getvalue() == "[##..] 1/2 steps\nlog [warn] careful\n"


def test_progress_without_a_total_has_no_bar() -> None:
    progress = events_pb2.ProgressEvent(current=1.5, units="MB", message="downloading")
    assert progress_text(progress) == "progress 1.5 MB  downloading"
