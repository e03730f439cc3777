"""The console's JSON endpoints (`/console/api/NAME?...`): what the page needs that
ARCP frames do not carry, each answered by the core's JobService with the caller's
own token (`gateway._core_jobs`).

- `job?id=` — GetJob: the job as a `session.jobs` entry (§6.6) plus, for its owner,
  `input` and `max_runtime_sec`; its outcome as the terminal frame (§7.3).
- `cancel?id=&reason=` — CancelJob: any job of the caller's principal, whichever
  session or backend submitted it (§7.4).
- `nodes` — ListNodes: the cluster's nodes, their state and running jobs.
- `workers` — ListWorkers: the cluster's connected remote workers (issue 23), each
  with its agents and versions, slots and running jobs, library, and since when.
- `agents` — ListAgents and the caller's jobs of the last hour (ListJobs), turned
  into per-agent rates, failure share and percentiles (`gateway._console_stats`).

Every answer is JSON; a refusal is `{"code", "message"}` with the ARCP code (§12)
and the HTTP status of its gRPC code. Requests are GETs because the gateway's
HTTP side parses nothing else; `cancel` changes state, which a GET must not do in
a browser's cookie world, but the token travels only in the `Authorization`
header, which no other site's page can make a browser send here (a cross-origin
request with it needs a CORS preflight the gateway never grants). JobService
values go out exactly as ARCP renders them (`gateway.codec`), so the page reads
one vocabulary; credential values never do (the console negotiates none, §9.8).
"""

from __future__ import annotations

import http
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import grpc

from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.errors import ARCPError, InvalidRequest
from arcp_grpc.grpc_status import GRPC_CODES
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2, session_pb2, session_service_pb2
from gateway._console_stats import JobSample, agent_stats
from gateway._core_jobs import CoreJobs
from gateway._fields import JOB_STATUS_NAMES, render_agent
from gateway._types import Dialect
from gateway._values import format_timestamp
from gateway.codec import encode_server_frame

__all__ = ["API_PATH", "ConsoleApi"]

API_PATH: Final = "/console/api/"
WINDOW_SEC: Final = 3600  # the Agents page's window: the last hour
SLICES: Final = 12  # its charts' points: five minutes each
_PAGE: Final = 1000  # ListJobs' largest page
_PAGES: Final = 10  # the Agents page counts at most this many pages of jobs (10 000)

_HTTP: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: http.HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: http.HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: http.HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNAUTHENTICATED: http.HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: http.HTTPStatus.FORBIDDEN,
    grpc.StatusCode.NOT_FOUND: http.HTTPStatus.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: http.HTTPStatus.CONFLICT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: http.HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.UNAVAILABLE: http.HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: http.HTTPStatus.GATEWAY_TIMEOUT,
}
_NODE_STATES: Final = {
    pb.NODE_STATE_ALIVE: "alive",
    pb.NODE_STATE_LEFT: "left",
    pb.NODE_STATE_DEAD: "dead",
}

Answer = tuple[http.HTTPStatus, dict[str, Any]]
_Query = Mapping[str, str]


class ConsoleApi:
    """Answers `API_PATH` requests through `CoreJobs`."""

    def __init__(self, jobs: CoreJobs) -> None:
        self._jobs = jobs
        self._routes: dict[str, Callable[[_Query, str], Awaitable[dict[str, Any]]]] = {
            "job": self._job,
            "cancel": self._cancel,
            "nodes": self._nodes,
            "workers": self._workers,
            "agents": self._agents,
        }

    async def answer(self, target: str, authorization: str) -> Answer:
        """The status and JSON body for request-target `target` (path and query)."""
        path, _, query = target.partition("?")
        route = self._routes.get(path.removeprefix(API_PATH))
        if route is None:
            return http.HTTPStatus.NOT_FOUND, {"code": "NOT_FOUND", "message": f"no {path}"}
        params = dict(urllib.parse.parse_qsl(query))
        try:
            return http.HTTPStatus.OK, await route(params, authorization)
        except ARCPError as exc:
            status = _HTTP.get(GRPC_CODES.get(exc.code, grpc.StatusCode.INTERNAL))
            body = {"code": exc.code, "message": exc.message}
            return status or http.HTTPStatus.INTERNAL_SERVER_ERROR, body

    async def _job(self, params: _Query, authorization: str) -> dict[str, Any]:
        request = pb.GetJobRequest(job_id=_required(params, "id"))
        reply = await self._jobs.call(lambda s: s.GetJob, request, authorization)
        job = reply.job
        del job.credentials[:]  # never to a browser (§9.8, §14)
        frame = session_service_pb2.ConnectResponse(jobs=session_pb2.SessionJobs(jobs=[job]))
        entry: dict[str, Any] = _rendered(frame)["payload"]["jobs"][0]
        if job.HasField("input"):
            entry["input"] = value_to_py(job.input)
        if job.HasField("max_runtime_sec"):
            entry["max_runtime_sec"] = job.max_runtime_sec
        return {"job": entry, "outcome": _outcome(reply)}

    async def _cancel(self, params: _Query, authorization: str) -> dict[str, Any]:
        cancel = jobs_pb2.JobCancel(job_id=_required(params, "id"), reason=params.get("reason", ""))
        request = pb.CancelJobRequest(cancel=cancel)
        reply = await self._jobs.call(lambda s: s.CancelJob, request, authorization)
        return {"job_id": reply.cancelled.job_id}

    async def _nodes(self, params: _Query, authorization: str) -> dict[str, Any]:
        reply = await self._jobs.call(lambda s: s.ListNodes, pb.ListNodesRequest(), authorization)
        return {
            "nodes": [
                {
                    "node_id": n.node_id,
                    "label": n.label,
                    "state": _NODE_STATES.get(n.state, "unknown"),
                    "since_heartbeat_ms": n.since_heartbeat.ToMilliseconds(),
                    "running_jobs": n.running_jobs,
                    "answering": n.answering,
                }
                for n in reply.nodes
            ]
        }

    async def _workers(self, params: _Query, authorization: str) -> dict[str, Any]:
        request = pb.ListWorkersRequest()
        reply = await self._jobs.call(lambda s: s.ListWorkers, request, authorization)
        return {"workers": [_worker(w) for w in reply.workers]}

    async def _agents(self, params: _Query, authorization: str) -> dict[str, Any]:
        listed = await self._jobs.call(
            lambda s: s.ListAgents, pb.ListAgentsRequest(), authorization
        )
        now = time.time()
        request = pb.ListJobsRequest(page_size=_PAGE)
        request.filter.created_after.FromNanoseconds(int((now - WINDOW_SEC) * 1e9))
        samples: list[JobSample] = []
        for _ in range(_PAGES):
            page = await self._jobs.call(lambda s: s.ListJobs, request, authorization)
            samples.extend(_sample(job) for job in page.jobs)
            request.page_token = page.next_page_token
            if not request.page_token:
                break
        stats = agent_stats(
            (a.name for a in listed.agents), samples, now=now, window_sec=WINDOW_SEC, slices=SLICES
        )
        return {
            "window_sec": WINDOW_SEC,
            "agents": stats,
            "truncated": bool(request.page_token),  # more jobs than the page counts
        }


def _required(params: _Query, name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequest(f"the query needs {name}=", details={"field": name})
    return value


def _rendered(frame: session_service_pb2.ConnectResponse) -> dict[str, Any]:
    """`frame` as the spec profile's ARCP JSON (§5), parsed back into a dict."""
    text = encode_server_frame(frame, profile=session_pb2.WIRE_PROFILE_SPEC, dialect=Dialect())
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _outcome(reply: pb.GetJobResponse) -> dict[str, Any] | None:
    """The job's terminal frame (`job.result` or `job.error`, §7.3), or None."""
    which = reply.outcome.WhichOneof("outcome") if reply.HasField("outcome") else None
    if which is None:
        return None
    frame = session_service_pb2.ConnectResponse()
    if which == "result":
        frame.result.CopyFrom(reply.outcome.result)
    else:
        frame.job_error.CopyFrom(reply.outcome.error)
    rendered = _rendered(frame)
    return {"type": rendered["type"], "payload": rendered["payload"]}


def _worker(worker: jobs_pb2.WorkerInfo) -> dict[str, Any]:
    """One worker, its agents as `session.welcome` lists them (§7.5), times in RFC 3339."""
    return {
        "name": worker.name,
        "node_id": worker.node_id,
        "agents": [render_agent(agent) for agent in worker.agents],
        "slots": worker.slots,
        "running": worker.running,
        "library": worker.library,
        "connected_at": format_timestamp(worker.connected_at),
        "updated_at": format_timestamp(worker.updated_at),
    }


def _sample(job: jobs_pb2.JobSummary) -> JobSample:
    completed = job.completed_at.ToNanoseconds() / 1e9 if job.HasField("completed_at") else None
    return JobSample(
        agent=job.agent.partition("@")[0],
        status=JOB_STATUS_NAMES.get(job.status, "pending"),
        created_at=job.created_at.ToNanoseconds() / 1e9,
        completed_at=completed,
    )
