"""What the CLI says (issue 24): one vocabulary in the table, ``--status`` and ``--json``
(``"status": "success"``, ``"level": "info"``, integers as numbers); the gateway's port
named as such instead of a ``--ca`` hint; a missing agent answered with the agents that
exist; Ctrl-C's message on a line of its own, not glued to the progress bar. Each runs the
real command against a real core and checks its exit code and output."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from arcp_grpc.server import RunningCore
from tests.arcp_grpc.cli.cli_run import cli as _cli
from tests.arcp_grpc.cli.cli_run import json_lines as _lines
from tests.conftest import SAFETY
from tests.serve_process import ARCP_GRPC, ServeProcess, clean_env, run_cli

_DEMO_AGENTS = "chatty, counter, delegator, echo, greeter, report, spender"


async def test_json_uses_the_words_of_the_table_and_numbers(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _cli(core, "submit", "chatty", "--input", '{"events": 2}', "--watch", "--json")
    frames = _lines(capsys.readouterr().out)
    assert code == 0
    events = [f for f in frames if f["type"] == "event"]
    assert [(e["job_seq"], e["log"]["level"]) for e in events] == [(1, "info"), (2, "info")]
    assert frames[-1]["final_status"] == "success"
    job_id = frames[0]["job_id"]

    assert await _cli(core, "get", job_id, "--json") == 0
    job, result = _lines(capsys.readouterr().out)
    assert (job["status"], job["last_event_seq"]) == ("success", 2)  # uint64: a number
    assert result["final_status"] == "success"
    assert await _cli(core, "jobs", "--status", "success", "--json") == 0
    assert {j["status"] for j in _lines(capsys.readouterr().out)} == {"success"}

    assert await _cli(core, "submit", "counter", "--input", '{"steps": -1}', "--watch", "--json")
    failed = _lines(capsys.readouterr().out)[-1]
    assert failed["type"] == "error"
    assert (failed["final_status"], failed["error"]["code"]) == ("error", "INVALID_REQUEST")


async def test_a_missing_agent_lists_the_agents_that_exist(
    core: RunningCore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(core, "submit", "ecoh", "--input", "{}") == 1
    assert capsys.readouterr().err == (
        f"arcp-grpc: AGENT_NOT_AVAILABLE: agent 'ecoh' is not registered; agents: {_DEMO_AGENTS}\n"
    )
    assert await _cli(core, "submit", "greeter@3.0.0", "--input", "{}") == 1
    err = capsys.readouterr().err
    assert err.startswith("arcp-grpc: AGENT_VERSION_NOT_AVAILABLE: ")
    assert err.endswith("; versions of greeter: 1.0.0, 2.0.0\n")
    assert await _cli(core, "submit", "ecoh", "--input", "{}", "--json") == 1
    (error,) = _lines(capsys.readouterr().out)
    assert error["code"] == "AGENT_NOT_AVAILABLE"
    assert error["message"].endswith(f"agents: {_DEMO_AGENTS}")


def test_the_gateway_port_is_named_not_a_tls_problem(
    processes: list[ServeProcess], tmp_path: Path
) -> None:
    served = ServeProcess(tmp_path, "--grpc-port", "0", "--gateway-port", "0", "--no-metrics")
    processes.append(served)
    gateway = urlsplit(served.start()["gateway"]).netloc
    done = run_cli("agents", "--address", gateway, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"arcp-grpc: {gateway} is an ARCP gateway's port (WebSocket")
    assert "not the core's gRPC port" in done.stderr
    assert "--ca" not in done.stderr
    assert run_cli("agents", "--address", served.info["grpc"], cwd=tmp_path).returncode == 0


def _read_until(fd: int, marker: bytes, seen: bytearray) -> None:
    """Read the terminal into `seen` until `marker` shows (or it closes, or SAFETY)."""
    deadline = time.monotonic() + SAFETY
    while marker not in seen and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer has closed the terminal
            return
        if not chunk:
            return
        seen += chunk


async def test_ctrl_c_prints_its_message_on_a_line_of_its_own(core: RunningCore) -> None:
    """stdout and stderr on one terminal, as a user has them: the progress bar is a
    redrawn line with no newline, so the message must start a new one."""
    controller, terminal = pty.openpty()
    argv = ["submit", "counter", "--input", '{"steps": 1000, "interval": 0.05}', "--watch"]
    process = await asyncio.create_subprocess_exec(
        *(ARCP_GRPC, *argv, "--address", core.grpc_address, "--token", "tok-alice"),
        stdout=terminal,
        stderr=terminal,
        env=clean_env(),
    )
    os.close(terminal)
    seen = bytearray()
    try:
        await asyncio.to_thread(_read_until, controller, b" steps\x1b[K", seen)  # a bar drawn
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(_read_until, controller, b"arcp-grpc cancel job_", seen)
        code = await asyncio.wait_for(process.wait(), SAFETY)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    text = seen.decode(errors="replace")
    assert code == 130
    message = text.index("arcp-grpc: stopped watching; job ")
    assert text[message - 1] == "\n", repr(text[-200:])  # not glued to "\x1b[K"
    job_id = text.split()[1]
    assert await _cli(core, "cancel", job_id) == 0  # the job ran on
