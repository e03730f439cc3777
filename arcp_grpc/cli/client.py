r"""The CLI's client commands: submit, watch, get, jobs, cancel, agents.

Each command runs on `arcp_grpc.client.Client` (the one client of the package), one
event loop per command: a CLI has one thing to do at a time. What is the CLI's own is
here: finding the core and the token, rendering, and exit codes. Exit codes follow
the job's terminal status so scripts can branch on them:

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | the job ended in error, or the call failed (an ARCP error, the core unreachable) |
| 2 | usage or configuration error |
| 3 | the job was cancelled |
| 4 | the job timed out |
| 130 | interrupted (Ctrl-C); a job being watched keeps running |
| 141 | the output was closed (`arcp-grpc jobs \| head -1`) |

An ARCP error prints ``arcp-grpc: CODE: message`` on stderr, never a trace
(with ``--json``, a ``{"type": "error", "code": ...}`` object on stdout).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from google.protobuf.message import Message

from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.cli.unreachable import unreachable
from arcp_grpc.client import Client, Job, JobInfo, Unavailable, plain
from arcp_grpc.config import DEV_TOKEN_FILE
from arcp_grpc.errors import AgentNotAvailable, AgentVersionNotAvailable, ARCPError
from arcp_grpc.v1 import errors_pb2, events_pb2, jobs_pb2

R = TypeVar("R")

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_TIMED_OUT",
    "EXIT_USAGE",
    "ClientError",
    "Connection",
    "WatchPrinter",
    "agents",
    "cancel",
    "get",
    "jobs",
    "submit",
    "watch",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED, EXIT_TIMED_OUT = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 130, 141  # 128 + SIGINT, 128 + SIGPIPE, as shells report

_EXIT_OF_STATUS = {
    jobs_pb2.JOB_STATUS_SUCCESS: EXIT_OK,
    jobs_pb2.JOB_STATUS_ERROR: EXIT_ERROR,
    jobs_pb2.JOB_STATUS_CANCELLED: EXIT_CANCELLED,
    jobs_pb2.JOB_STATUS_TIMED_OUT: EXIT_TIMED_OUT,
}


class ClientError(Exception):
    """A failure the CLI reports in one line; `exit_code` is what the process returns and
    `code` names the failure for ``--json`` (an ARCP §12 code, or USAGE, UNAVAILABLE,
    INTERRUPTED)."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, code: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code or ("USAGE" if exit_code == EXIT_USAGE else "ERROR")


@dataclass(frozen=True)
class Connection:
    """Where the core is and who we are; resolved from flags, ``ARCP_*`` and the data dir."""

    address: str
    token: str
    ca_file: str = ""

    @classmethod
    def resolve(
        cls,
        *,
        address: str | None,
        token: str | None,
        data_dir: str | None,
        ca_file: str | None,
        env: Mapping[str, str] = os.environ,
    ) -> Connection:
        """Flag, else environment, else the embedded default (and its token file)."""
        address = address or env.get("ARCP_ADDRESS") or "127.0.0.1:7400"
        token = token or env.get("ARCP_TOKEN")
        if not token:
            path = Path(data_dir or env.get("ARCP_DATA_DIR") or "data") / DEV_TOKEN_FILE
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError:
                raise ClientError(
                    f"no token: pass --token, set ARCP_TOKEN, or run from the directory whose "
                    f"data/ holds {DEV_TOKEN_FILE} (tried {path})",
                    EXIT_USAGE,
                ) from None
        return cls(address, token, ca_file or env.get("ARCP_TLS_CA", ""))

    def run(self, work: Callable[[Client], Awaitable[R]]) -> R:
        """Run `work` on a client connected to the core; its failures become a one-line
        `ClientError` (the CLI is synchronous: one thing at a time, one event loop each)."""
        try:
            roots = Path(self.ca_file).read_bytes() if self.ca_file else None
        except OSError as exc:
            raise ClientError(f"cannot read CA file {self.ca_file}: {exc.strerror}", 2) from None

        async def connected() -> R:
            async with await Client.connect(self.address, token=self.token, ca=roots) as client:
                return await work(client)

        try:
            return asyncio.run(connected())
        except Unavailable as exc:
            message = unreachable(self.address, exc.detail, ca_file=self.ca_file)
            raise ClientError(message, code="UNAVAILABLE") from None
        except ARCPError as exc:
            raise ClientError(f"{exc.code}: {exc.message}", code=exc.code) from None


def _json_line(out: TextIO, kind: str, body: Mapping[str, Any]) -> None:
    out.write(json.dumps({"type": kind, **body}, separators=(",", ":")) + "\n")
    out.flush()


# -- watch rendering ---------------------------------------------------------


@dataclass
class WatchPrinter:
    """Renders a job's events: a progress bar (one redrawn line on a TTY, plain lines
    otherwise), readable log lines, and the outcome; or JSON lines with ``json_lines``."""

    out: TextIO
    json_lines: bool = False
    width: int = 24
    last_seq: int = 0  # the job_seq of the last event shown: where a later watch resumes
    _bar_open: bool = False  # a progress bar is drawn on the current line (a TTY)
    _text_open: bool = False  # a result chunk left the current line unterminated

    @property
    def tty(self) -> bool:
        return self.out.isatty()

    def event(self, event: events_pb2.JobEvent) -> None:
        self.last_seq = event.job_seq
        if self.json_lines:
            _json_line(self.out, "event", plain(event))
            return
        kind = event.WhichOneof("body")
        if kind == "progress":
            self._progress(event.progress)
        elif kind == "result_chunk":
            self._chunk(event.result_chunk)
        else:
            self._line(describe(event))

    def outcome(self, outcome: jobs_pb2.JobOutcome) -> int:
        """Print the terminal frame; the exit code its status means."""
        if outcome.HasField("result"):
            result = outcome.result
            if self.json_lines:
                _json_line(self.out, "result", plain(result))
            elif result.HasField("streamed"):
                streamed = result.streamed
                self._line(
                    f"success {result.job_id} (streamed result {streamed.result_id}, "
                    f"{streamed.result_size} bytes, shown above)"
                )
            else:
                self._line(f"success {result.job_id}")
                if result.HasField("value"):
                    self._line(json.dumps(value_to_py(result.value)))
            return _EXIT_OF_STATUS.get(result.final_status, EXIT_ERROR)
        failed = outcome.error
        if self.json_lines:
            _json_line(self.out, "error", plain(failed))
        else:
            status = jobs_pb2.JobStatus.Name(failed.final_status).removeprefix("JOB_STATUS_")
            code = errors_pb2.ErrorCode.Name(failed.error.code).removeprefix("ERROR_CODE_")
            retry = " (retryable)" if failed.error.retryable else ""
            self._line(f"{status.lower()} {failed.job_id}: {code}: {failed.error.message}{retry}")
        return _EXIT_OF_STATUS.get(failed.final_status, EXIT_ERROR)

    def _progress(self, progress: events_pb2.ProgressEvent) -> None:
        text = progress_text(progress, self.width)
        if self.tty:
            if self._text_open:
                self.out.write("\n")
                self._text_open = False
            self.out.write("\r" + text + "\x1b[K")
            self.out.flush()
            self._bar_open = True
        else:
            self._line(text)

    def _chunk(self, chunk: events_pb2.ResultChunkEvent) -> None:
        """A streamed result is printed as it arrives (§8.4), never held whole in memory."""
        if chunk.encoding == events_pb2.CHUNK_ENCODING_BASE64:
            self._line(f"result_chunk {chunk.chunk_seq}: {len(chunk.data)} bytes (binary)")
            return
        if self._bar_open:
            self.out.write("\n")
            self._bar_open = False
        text = chunk.data.decode("utf-8", errors="replace")
        self.out.write(text)
        self.out.flush()
        if text:
            self._text_open = not text.endswith("\n")

    def end_line(self) -> None:
        """Finish a line left open (a progress bar, a result chunk), so what is printed
        next, here or on stderr of the same terminal, starts a line of its own."""
        if self._bar_open or self._text_open:
            self.out.write("\n")
            self.out.flush()
            self._bar_open = self._text_open = False

    def _line(self, text: str) -> None:
        self.end_line()
        self.out.write(text + "\n")
        self.out.flush()


def progress_text(progress: events_pb2.ProgressEvent, width: int = 24) -> str:
    """``[#########...............]  3/8 steps  step 3 of 8`` (§8.2.1)."""
    units = f" {progress.units}" if progress.units else ""
    message = f"  {progress.message}" if progress.message else ""
    current = _number(progress.current)
    if progress.HasField("total") and progress.total > 0:
        fraction = min(1.0, max(0.0, progress.current / progress.total))
        filled = round(fraction * width)
        bar = "#" * filled + "." * (width - filled)
        return f"[{bar}] {current}/{_number(progress.total)}{units}{message}"
    return f"progress {current}{units}{message}"


def describe(event: events_pb2.JobEvent) -> str:
    """One readable line for a non-progress event."""
    kind = event.WhichOneof("body")
    if kind == "log":
        level = events_pb2.LogLevel.Name(event.log.level).removeprefix("LOG_LEVEL_").lower()
        return f"log [{level}] {event.log.message}"
    if kind == "thought":
        return f"thought {event.thought.text}"
    if kind == "status":
        message = f" {event.status.message}" if event.status.message else ""
        return f"status {event.status.phase}{message}"
    if kind == "metric":
        return (
            f"metric {event.metric.name}={_number(event.metric.value)} {event.metric.unit}".rstrip()
        )
    if kind is None:
        return "event (empty)"
    body: Message = getattr(event, kind)
    return f"{kind} {json.dumps(plain(body), separators=(',', ':'))}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- commands ----------------------------------------------------------------


def submit(
    conn: Connection,
    out: TextIO,
    *,
    agent: str,
    input_json: str | None,
    key: str = "",
    lease_json: str = "",
    max_runtime: int | None = None,
    watch_after: bool = False,
    json_lines: bool = False,
) -> int:
    """SubmitJob; with `watch_after`, follow the job to its end (exit code = status)."""
    given = _parse_json("--input", input_json) if input_json is not None else None
    lease: dict[str, list[str]] | None = None
    if lease_json:
        lease = _parse_json("--lease", lease_json)
        if not isinstance(lease, dict) or not all(
            isinstance(p, list) and all(isinstance(x, str) for x in p) for p in lease.values()
        ):
            raise ClientError('--lease must be {"namespace": ["pattern", ...]}', EXIT_USAGE)
    printer = WatchPrinter(out, json_lines)
    accepted: list[Job] = []  # the job once accepted: what a Ctrl-C names

    async def run(client: Client) -> int:
        try:
            job = await client.submit(
                agent, given, idempotency_key=key or None, lease=lease, max_runtime=max_runtime
            )
        except (AgentNotAvailable, AgentVersionNotAvailable) as exc:
            raise ClientError(await _with_inventory(client, exc), code=exc.code) from None
        accepted.append(job)
        if json_lines:
            _json_line(out, "accepted", plain(job.proto))
        else:
            out.write(f"accepted {job.job_id} ({job.agent})\n")
            out.flush()
        if not watch_after:
            return EXIT_OK
        return await _follow(client, job.job_id, printer)

    try:
        return conn.run(run)
    except KeyboardInterrupt:
        if not accepted:
            raise
        raise _interrupted(accepted[0].job_id, printer) from None


async def _with_inventory(client: Client, exc: AgentNotAvailable | AgentVersionNotAvailable) -> str:
    """The refusal, followed by what does exist (§7.5): the agents with their versions,
    or the versions of the agent that was named, so a typo is fixed without a second
    command."""
    known = await client.agents()
    name = exc.details.get("agent", "")
    same = [info for info in known if info.name == name]
    if isinstance(exc, AgentVersionNotAvailable) and same:
        offered = f"versions of {name}: {', '.join(same[0].versions)}"
    else:
        offered = "agents: " + (", ".join(info.name for info in known) or "none")
    return f"{exc.code}: {exc.message}; {offered}"


def watch(conn: Connection, out: TextIO, *, job_id: str, after: int, json_lines: bool) -> int:
    """WatchJob from `after` to the outcome; the exit code reflects the final status."""
    printer = WatchPrinter(out, json_lines, last_seq=after)
    try:
        return conn.run(lambda client: _follow(client, job_id, printer))
    except KeyboardInterrupt:
        raise _interrupted(job_id, printer) from None


async def _follow(client: Client, job_id: str, printer: WatchPrinter) -> int:
    following = client.watch(job_id, after=printer.last_seq)
    async for event in following:
        printer.event(event.proto)
    assert following.outcome is not None
    return printer.outcome(following.outcome.proto)


def _interrupted(job_id: str, printer: WatchPrinter) -> ClientError:
    """Ctrl-C stops the watching, not the job (it runs in the core): say how to pick it
    up again or end it. The message goes on a line of its own, not after the bar."""
    printer.end_line()
    return ClientError(
        f"stopped watching; job {job_id} is still running. "
        f"Follow it: arcp-grpc watch {job_id} --after {printer.last_seq}  "
        f"Cancel it: arcp-grpc cancel {job_id}",
        EXIT_INTERRUPTED,
        "INTERRUPTED",
    )


def jobs(
    conn: Connection,
    out: TextIO,
    *,
    status: str = "",
    agent: str = "",
    limit: int = 20,
    json_lines: bool = False,
) -> int:
    """ListJobs, newest first, following pages up to `limit` jobs."""
    if status and status.lower() not in _STATUSES:
        raise ClientError(f"--status must be one of {', '.join(_STATUSES)}", EXIT_USAGE)

    async def run(client: Client) -> list[JobInfo]:
        found: list[JobInfo] = []
        listed = client.list(
            status=[status] if status else [], agent=agent, page_size=min(limit, 100)
        )
        async for info in listed:
            found.append(info)
            if len(found) == limit:
                break
        return found

    found = conn.run(run)
    if not json_lines:
        out.write(_JOBS_ROW.format("JOB", "STATUS", "AGENT", "SUBMITTED").rstrip() + "\n")
    for info in found:
        if json_lines:
            _json_line(out, "job", plain(info.proto))
        else:
            summary = info.proto
            created = summary.created_at.ToJsonString() if summary.HasField("created_at") else ""
            out.write(_JOBS_ROW.format(info.job_id, info.status, info.agent, created) + "\n")
    out.flush()
    return EXIT_OK


_JOBS_ROW = "{:<30}  {:<9}  {:<24}  {}"
_STATUSES = [
    name.removeprefix("JOB_STATUS_").lower()
    for name, value in jobs_pb2.JobStatus.items()
    if value != jobs_pb2.JOB_STATUS_UNSPECIFIED
]


def get(conn: Connection, out: TextIO, *, job_id: str, json_lines: bool) -> int:
    """GetJob: the job's state and outcome in one call, without replaying its events
    (a streamed result is not repeated: `watch` prints it)."""
    info = conn.run(lambda client: client.get(job_id))
    job = info.proto
    if json_lines:
        _json_line(out, "job", plain(job))
        if info.outcome is not None:
            ended = info.outcome.proto.WhichOneof("outcome") or "result"
            _json_line(out, ended, plain(getattr(info.outcome.proto, ended)))
        return EXIT_OK
    rows = [("job", info.job_id), ("status", info.status), ("agent", info.agent)]
    if job.HasField("created_at"):
        rows.append(("submitted", job.created_at.ToJsonString()))
    if job.HasField("completed_at"):
        rows.append(("ended", job.completed_at.ToJsonString()))
    if info.outcome is not None:
        rows.append(_outcome_row(info.outcome.proto, job_id))
    for name, value in rows:
        out.write(f"{name:<10} {value}\n")
    out.flush()
    return EXIT_OK


def _outcome_row(outcome: jobs_pb2.JobOutcome, job_id: str) -> tuple[str, str]:
    if outcome.HasField("error"):
        error = outcome.error.error
        code = errors_pb2.ErrorCode.Name(error.code).removeprefix("ERROR_CODE_")
        return "error", f"{code}: {error.message}" + (" (retryable)" if error.retryable else "")
    result = outcome.result
    if result.HasField("streamed"):
        streamed = result.streamed
        return "result", (
            f"streamed ({streamed.result_id}, {streamed.result_size} bytes); "
            f"arcp-grpc watch {job_id} prints it"
        )
    return "result", json.dumps(value_to_py(result.value))


def cancel(conn: Connection, out: TextIO, *, job_id: str, reason: str, json_lines: bool) -> int:
    """CancelJob (§7.4). A job that already ended gets one answer whatever its end
    (the core acknowledges a cancel of a cancelled job and refuses one of a job
    that ended otherwise): it already ended, nothing to cancel, exit 0."""

    async def run(client: Client) -> str:
        """ "" when the cancel was requested, else the status the job had ended with."""
        known = await client.get(job_id)
        if known.outcome is not None:
            return known.status
        try:
            await client.cancel(job_id, reason)
        except ARCPError as exc:
            ended = exc.details.get("final_status", "")
            if not ended:
                raise
            return str(ended)  # it ended between the two calls
        return ""

    ended = conn.run(run)
    if json_lines:
        if ended:
            _json_line(out, "already_ended", {"job_id": job_id, "final_status": ended})
        else:
            _json_line(out, "cancelled", {"job_id": job_id})
    elif ended:
        out.write(f"job {job_id} already ended ({ended}); nothing to cancel\n")
    else:
        out.write(f"cancel requested for {job_id}\n")
    out.flush()
    return EXIT_OK


def agents(conn: Connection, out: TextIO, *, json_lines: bool) -> int:
    """ListAgents: names, versions and the default version (§7.5)."""
    for info in conn.run(lambda client: client.agents()):
        if json_lines:
            _json_line(out, "agent", plain(info.proto))
        else:
            versions = ", ".join(
                f"{v} (default)" if v == info.default_version else v for v in info.versions
            )
            out.write(f"{info.name:<12}  {versions}\n")
    out.flush()
    return EXIT_OK


def workers(conn: Connection, out: TextIO, *, json_lines: bool) -> int:
    """ListWorkers: each connected worker, what it runs of its slots, its agents and the
    node holding its stream (issue 23)."""
    found = conn.run(lambda client: client.workers())
    for worker in found:
        if json_lines:
            _json_line(out, "worker", plain(worker.proto))
        else:
            hosted = ", ".join(f"{a.name}@{'|'.join(a.versions)}" for a in worker.agents)
            node = f"  node {worker.node_id}" if worker.node_id else ""
            out.write(f"{worker.name:<12}  {worker.running}/{worker.slots} busy  {hosted}{node}\n")
    if not found and not json_lines:
        out.write("no worker is connected\n")
    out.flush()
    return EXIT_OK


def _parse_json(flag: str, text: str) -> Any:
    """Strict JSON (RFC 8259): NaN, Infinity and numbers beyond a double are refused
    here, in one line, rather than reaching the core as values JSON cannot carry."""

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(f"{token} is too large for a JSON number")
        return value

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    try:
        return json.loads(text, parse_float=finite, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ClientError(f"{flag} is not valid JSON: {exc.msg} at {exc.pos}", EXIT_USAGE) from None
    except ValueError as exc:
        raise ClientError(f"{flag} is not valid JSON: {exc}", EXIT_USAGE) from None
