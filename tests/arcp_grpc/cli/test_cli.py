"""The CLI client against a real core: exit codes follow the terminal status,
ARCP errors print one line with the code, progress renders for a TTY and for
a pipe, and `--json` gives one object per line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from pathlib import Path

import pytest

from arcp_grpc.cli.client import WatchPrinter, progress_text
from arcp_grpc.cli.main import main
from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import events_pb2, jobs_pb2
from tests.arcp_grpc.cli.cli_run import cli as _cli
from tests.arcp_grpc.cli.cli_run import json_lines as _lines
from tests.conftest import SAFETY
from tests.serve_process import ARCP_GRPC, clean_env


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
    assert watched[-1]["final_status"] == "cancelled"
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
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["JOB", "STATUS", "AGENT", "SUBMITTED"]
    assert len(rows) == 1
    assert rows[0].split()[1:3] == ["success", "echo@1.0.0"]
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
        (("submit", "echo", "--input", "NaN"), "--input is not valid JSON: NaN is not JSON"),
        (("submit", "echo", "--input", '{"n": 1e400}'), "1e400 is too large for a JSON"),
        (("submit", "echo", "--lease", '{"tool.call": "x"}'), "--lease must be"),
        (("jobs", "--status", "bogus"), "--status must be one of pending, running"),
    ],
)
async def test_usage_errors_exit_2(
    core: RunningCore, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert await _cli(core, *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("submit", "echo", "--max-runtime", "-5"), "--max-runtime: must be between 1 and"),
        (("submit", "echo", "--max-runtime", "soon"), "--max-runtime: expected an integer"),
        (("jobs", "--limit", "-1"), "--limit: must be between 1 and"),
        (("watch", "job_x", "--after", "-1"), "--after: must be between 0 and"),
        (("jobs", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_in_one_line_without_a_trace(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert main([*args, "--token", "t"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.err.splitlines()[-1].startswith("arcp-grpc: ")
    assert captured.err.startswith("usage: arcp-grpc")


def test_with_json_bad_arguments_are_a_json_object_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["jobs", "--limit", "-1", "--json", "--token", "t"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ""
    error = json.loads(captured.out)
    assert error["type"] == "error"
    assert error["code"] == "USAGE"
    assert error["exit_code"] == 2
    assert "--limit: must be between 1 and" in error["message"]


async def test_with_json_arcp_errors_are_json_objects_on_stdout(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(core, "watch", "job_missing", "--json") == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    assert _lines(captured.out) == [
        {
            "type": "error",
            "code": "JOB_NOT_FOUND",
            "message": "JOB_NOT_FOUND: job 'job_missing' not found",
            "exit_code": 1,
        }
    ]


def test_with_json_an_unreachable_core_is_a_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["agents", "--json", "--address", "127.0.0.1:1", "--token", "t"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert (error["type"], error["code"]) == ("error", "UNAVAILABLE")


async def test_get_shows_status_and_outcome_without_the_events(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cli(core, "submit", "greeter", "--input", '{"name": "get"}', "--watch", "--json")
    job_id = _lines(capsys.readouterr().out)[0]["job_id"]
    assert await _cli(core, "get", job_id) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["job"] == job_id
    assert rows["status"] == "success"
    assert rows["agent"] == "greeter@2.0.0"
    assert json.loads(rows["result"]) == {"greeting": "Hello, get!", "version": "2.0.0"}
    assert "thought" not in rows  # no event replay: GetJob, not WatchJob
    assert await _cli(core, "get", job_id, "--json") == 0
    job, result = _lines(capsys.readouterr().out)
    assert (job["type"], job["status"]) == ("job", "success")
    assert result["type"] == "result"
    assert await _cli(core, "get", "job_missing") == 1
    assert "JOB_NOT_FOUND" in capsys.readouterr().err


async def test_get_names_a_failed_jobs_code(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cli(core, "submit", "counter", "--input", '{"steps": -1}', "--watch", "--json")
    job_id = _lines(capsys.readouterr().out)[0]["job_id"]
    assert await _cli(core, "get", job_id) == 0
    out = capsys.readouterr().out
    assert "status     error" in out
    assert "error      INVALID_REQUEST: input.steps must be an integer" in out


async def test_a_streamed_result_prints_as_it_arrives(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    """§8.4: each result_chunk is written when it comes, then the outcome line."""
    assert await _cli(core, "submit", "report", "--input", '{"sections": 2}', "--watch") == 0
    out = capsys.readouterr().out
    body = "## Section 1\n\nFindings for section 1.\n\n## Section 2\n\nFindings for section 2.\n\n"
    assert body in out
    assert out.index(body) < out.index("success job_")
    assert "(streamed result res_" in out


def test_chunks_print_in_order_as_they_come() -> None:
    out = io.StringIO()
    printer = WatchPrinter(out)
    for seq, text in enumerate(("alpha ", "beta")):
        event = events_pb2.JobEvent(job_id="job_1", job_seq=seq + 1)
        event.result_chunk.data = text.encode()
        event.result_chunk.chunk_seq = seq
        printer.event(event)
        assert out.getvalue().endswith(text)  # written at once, not held to the end
    printer.event(_log("after"))
    assert out.getvalue() == "alpha beta\nlog [warn] after\n"


async def test_cancelling_an_ended_job_answers_alike_whatever_its_end(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The core acknowledges a cancel of a cancelled job and refuses one of a job that
    ended otherwise; the CLI says the same for both: it already ended, exit 0."""
    await _cli(core, "submit", "echo", "--input", "{}", "--watch", "--json")
    finished = _lines(capsys.readouterr().out)[0]["job_id"]
    await _cli(core, "submit", "counter", "--input", '{"steps": 1000, "interval": 0.05}', "--json")
    running = _lines(capsys.readouterr().out)[0]["job_id"]
    assert await _cli(core, "cancel", running) == 0
    assert capsys.readouterr().out == f"cancel requested for {running}\n"
    assert await _cli(core, "watch", running) == 3
    capsys.readouterr()
    for job_id, status in ((finished, "success"), (running, "cancelled")):
        assert await _cli(core, "cancel", job_id) == 0
        assert capsys.readouterr().out == (
            f"job {job_id} already ended ({status}); nothing to cancel\n"
        )
        assert await _cli(core, "cancel", job_id, "--json") == 0
        assert _lines(capsys.readouterr().out) == [
            {"type": "already_ended", "job_id": job_id, "final_status": status}
        ]


async def _spawn(core: RunningCore, *args: str, stdout: int) -> asyncio.subprocess.Process:
    """`arcp-grpc ARGS` as a real process (signals and pipes are the point)."""
    argv = [*args, "--address", core.grpc_address, "--token", "tok-alice"]
    return await asyncio.create_subprocess_exec(
        ARCP_GRPC, *argv, stdout=stdout, stderr=asyncio.subprocess.PIPE, env=clean_env()
    )


@pytest.mark.parametrize(
    "args",
    [("jobs",), ("agents",), ("submit", "chatty", "--input", '{"events": 50}', "--watch")],
)
async def test_a_closed_pipe_ends_quietly(core: RunningCore, args: tuple[str, ...]) -> None:
    """`arcp-grpc jobs | head -1`: the reader is gone before the first write (here for
    certain: its end is closed at once), and the CLI exits 141 without a trace."""
    await _cli(core, "submit", "echo", "--input", "{}", "--watch")
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = await _spawn(core, *args, stdout=writer)
    finally:
        os.close(writer)
    _, err = await asyncio.wait_for(process.communicate(), SAFETY)
    assert process.returncode == 141
    assert err.decode() == ""


async def test_ctrl_c_on_submit_watch_says_the_job_runs_on(core: RunningCore) -> None:
    process = await _spawn(
        core,
        *("submit", "counter", "--input", '{"steps": 1000, "interval": 0.05}', "--watch"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    accepted = await asyncio.wait_for(process.stdout.readline(), SAFETY)
    job_id = accepted.decode().split()[1]
    await asyncio.wait_for(process.stdout.readline(), SAFETY)  # the first event: watching
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), SAFETY)
    assert process.returncode == 130
    message = err.decode()
    assert message.startswith(f"arcp-grpc: stopped watching; job {job_id} is still running.")
    assert f"arcp-grpc watch {job_id} --after " in message
    assert f"arcp-grpc cancel {job_id}" in message
    assert "Traceback" not in message
    assert await _cli(core, "cancel", job_id) == 0  # it was still running


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
