"""Remote workers as the runtime sees them: who is connected, what they host, where a
job goes (issue 23, docs/workers.md).

A remote agent is an agent like any other to the rest of the runtime: admission
resolves it to a `RegisteredAgent`, the factory makes an `ActiveJob`, the executor
runs it under its deadline, expiry and budget and records its one end. Only its
body differs: instead of Python code it is "relay to a worker" (`RemoteJob`).

Placement: among the connected workers that host the agent at that version, the
least loaded one with a free slot. A job waits while every such worker is busy
(its own `max_runtime_sec` and expiry still run); while none is connected at all
it waits at most `wait_sec` in total and then fails with AGENT_NOT_AVAILABLE, so a
job never hangs on a worker that may never come. Agents any worker ever registered
stay known, so a submit made while their workers reconnect is accepted and waits.

A worker that goes (stream broken, heartbeat missed) ends its running jobs with a
retryable INTERNAL_ERROR at once; the executor revokes their credentials as for any
end. Nothing is re-run: a retry is the client's decision (agents spend money).

In a cluster the directory also holds the workers of the other nodes, as they last
published them (`arcp_grpc.runtime.worker_peers`): their agents are known here too, and
a job for an agent no worker of this node hosts goes to the node whose workers have the
most free slots (`peer_for`), which owns and runs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import timestamp_pb2

from arcp_grpc.agents import RegisteredAgent
from arcp_grpc.base.agentref import AgentRef
from arcp_grpc.context import JobContext
from arcp_grpc.errors import (
    AgentNotAvailable,
    AgentVersionNotAvailable,
    InternalError,
    InvalidRequest,
)
from arcp_grpc.runtime.remote_job import RemoteJob
from arcp_grpc.runtime.table import JobTable
from arcp_grpc.v1 import jobs_pb2
from arcp_grpc.v1 import worker_service_pb2 as pb

__all__ = ["WorkerDirectory", "WorkerLimits", "WorkerLink"]


@dataclass(frozen=True)
class WorkerLimits:
    """`[workers]` (docs/configuration.md)."""

    wait_sec: float = 30.0  # a job with no connected worker for its agent fails after this
    heartbeat_sec: float = 5.0
    heartbeat_timeout_sec: float = 15.0
    event_window: int = 256  # counted messages a worker may send before more are granted


@dataclass(eq=False)
class WorkerLink:
    """One connected worker: its agents, its slots, its running jobs, and how to reach it.

    `send` queues one message for the worker's stream; what it may queue is bounded by
    the slots (assignments), the event window (answers, credits, budget updates: at
    most one per counted message the worker sent) and one stop per job."""

    name: str
    agents: dict[str, jobs_pb2.AgentInfo]
    slots: int
    send: Callable[[pb.WorkResponse], None]
    credentials_ok: bool  # §14: the stream may carry credential values
    window: int
    library: str = ""  # what the worker said it runs, for operators
    connected_at: float = field(default_factory=time.time)
    running: dict[str, RemoteJob] = field(default_factory=dict)
    outstanding: int = 0  # counted messages received and not yet granted back
    settled: int = 0  # counted messages handled since the last grant

    def hosts(self, agent: RegisteredAgent) -> bool:
        info = self.agents.get(agent.name)
        return info is not None and agent.version in info.versions

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def info(self, node_id: str, now: timestamp_pb2.Timestamp) -> jobs_pb2.WorkerInfo:
        """The worker as `ListWorkers` shows it."""
        info = jobs_pb2.WorkerInfo(
            name=self.name,
            node_id=node_id,
            agents=[self.agents[name] for name in sorted(self.agents)],
            slots=self.slots,
            running=len(self.running),
            library=self.library,
            updated_at=now,
        )
        info.connected_at.FromNanoseconds(int(self.connected_at * 1e9))
        return info

    async def receive(self, request: pb.WorkRequest) -> None:
        """One message of the worker after its registration. A worker acts only on the
        jobs it was assigned: anything for another job is ignored, or refused if a step.
        Raises InvalidRequest for a protocol violation (the stream then ends)."""
        kind = request.WhichOneof("kind")
        if kind == "heartbeat":
            return
        if kind not in ("event", "outcome", "step"):
            raise InvalidRequest(f"a worker may not send {kind or 'an empty message'} here")
        self.outstanding += 1
        if self.outstanding > self.window + self.slots:  # one event per job may overrun
            raise InvalidRequest(f"the worker sent past its event window ({self.window})")
        if kind == "step":
            remote = self.running.get(request.step.job_id)
            if remote is not None:
                remote.on_step(request.step, self)
                return
            refused = pb.StepAnswer(job_id=request.step.job_id, step_id=request.step.step_id)
            refused.error.CopyFrom(
                InvalidRequest("the job is not running on this worker").to_proto()
            )
            self.send(pb.WorkResponse(answer=refused))
        elif kind == "event":
            remote = self.running.get(request.event.job_id)
            if remote is not None:
                await remote.on_event(request.event)
        else:
            remote = self.running.get(request.outcome.job_id)
            if remote is not None:
                remote.on_outcome(request.outcome)
        self.settle()

    def settle(self) -> None:
        """One counted message is handled: grant credit back in batches of half the
        window, so a worker that keeps sending never waits on a round trip."""
        self.settled += 1
        if self.settled >= max(1, self.window // 2):
            self.outstanding -= self.settled
            self.send(pb.WorkResponse(credit=pb.EventCredit(events=self.settled)))
            self.settled = 0


class WorkerDirectory:
    """The connected workers of this node, the remote agents they made known, and the
    workers of the other nodes of a cluster."""

    def __init__(self, table: JobTable, limits: WorkerLimits, node_id: str = "") -> None:
        self.limits = limits
        self.node_id = node_id  # this node's id in a cluster; "" alone on its store
        self._table = table
        self.links: list[WorkerLink] = []
        self._known: dict[str, jobs_pb2.AgentInfo] = {}  # name -> versions ever registered
        self._agents: dict[str, RegisteredAgent] = {}  # "name@version" -> its relay
        self._changed = asyncio.Event()
        self.peers: list[jobs_pb2.WorkerInfo] = []  # the other nodes' workers, as published
        self.on_change: Callable[[], None] = lambda: None  # a worker came or went

    # -- what admission and the queries ask ---------------------------------------

    def resolve(self, ref: AgentRef) -> RegisteredAgent | None:
        """The remote agent `ref` names, or None when no worker of this node ever hosted
        the name and none of another node hosts it now."""
        info = self._agent_infos().get(ref.name)
        if info is None:
            return None
        version = ref.version or info.default_version
        if version not in info.versions:
            raise AgentVersionNotAvailable(
                f"no worker hosts agent {ref.name!r} at version {version!r}",
                details={"agent": ref.name, "version": version},
            )
        return self.relay(ref.name, version)

    def relay(self, name: str, version: str) -> RegisteredAgent:
        """The remote agent `name@version`, known or not: a job handed to this node by
        another runs here even if its worker went meanwhile (it then waits `wait_sec`)."""
        key = f"{name}@{version}"
        agent = self._agents.get(key)
        if agent is None:
            agent = RegisteredAgent(name, version, self._relay)
            self._agents[key] = agent
        return agent

    def inventory(self) -> Iterable[jobs_pb2.AgentInfo]:
        return self._agent_infos().values()

    def peer_for(self, agent: RegisteredAgent) -> str | None:
        """The node to hand a job for `agent` to: None while a worker of this node hosts
        it (or none of another node does); else the node whose workers hosting it have
        the most free slots, as they last published (a busy one queues the job)."""
        if not self.peers or any(link.hosts(agent) for link in self.links):
            return None
        free: dict[str, int] = {}
        for worker in self.peers:
            if any(a.name == agent.name and agent.version in a.versions for a in worker.agents):
                free[worker.node_id] = free.get(worker.node_id, 0) + worker.slots - worker.running
        return max(free, key=lambda node: free[node]) if free else None

    def listing(self) -> list[jobs_pb2.WorkerInfo]:
        """This node's connected workers, in the order they connected."""
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        return [link.info(self.node_id, now) for link in self.links]

    def _agent_infos(self) -> dict[str, jobs_pb2.AgentInfo]:
        """Agents by name: those this node's workers ever registered, with the versions
        the other nodes' workers host now."""
        merged = dict(self._known)
        for worker in self.peers:
            for info in worker.agents:
                known = merged.get(info.name)
                merged[info.name] = _union(known, info) if known is not None else info
        return merged

    # -- workers coming and going -------------------------------------------------

    def connect(self, link: WorkerLink) -> None:
        for info in link.agents.values():
            known = self._known.get(info.name)
            self._known[info.name] = _union(known, info) if known is not None else info
        self.links.append(link)
        self._notify()
        self.on_change()

    def disconnect(self, link: WorkerLink, why: str) -> None:
        """The worker is gone: its running jobs end with a retryable INTERNAL_ERROR."""
        if link in self.links:
            self.links.remove(link)
        for remote in list(link.running.values()):
            remote.job.stop(InternalError(f"worker {link.name} is gone: {why}"))
        self._notify()
        self.on_change()

    # -- running a job on a worker ------------------------------------------------

    async def _relay(self, ctx: JobContext, input_value: Any) -> Any:
        """The body of every remote agent: place the job, hand it over, wait for its end."""
        job = self._table.active[ctx.job_id]
        remote = RemoteJob(job, ctx)
        link = await self._place(remote)
        try:
            link.send(remote.assignment(input_value, credentials=link.credentials_ok))
            return await remote.ended
        finally:
            link.running.pop(job.job_id, None)
            remote.close(link if link in self.links else None)
            self._notify()

    async def _place(self, remote: RemoteJob) -> WorkerLink:
        agent = remote.job.agent
        absent_since: float | None = None
        while True:
            changed = self._changed
            hosts = [link for link in self.links if link.hosts(agent)]
            free = [link for link in hosts if link.free > 0]
            if free:
                # No await between the choice and taking the slot.
                link = min(free, key=lambda candidate: len(candidate.running) / candidate.slots)
                link.running[remote.job.job_id] = remote
                remote.link = link
                return link
            timeout: float | None = None
            if not hosts:
                now = time.monotonic()
                absent_since = absent_since if absent_since is not None else now
                timeout = self.limits.wait_sec - (now - absent_since)
            else:
                absent_since = None
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                raise AgentNotAvailable(
                    f"no worker hosting {agent.ref} connected within"
                    f" {self.limits.wait_sec:g} s (workers.wait_sec)",
                    details={"agent": agent.name, "version": agent.version},
                ) from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _union(known: jobs_pb2.AgentInfo, info: jobs_pb2.AgentInfo) -> jobs_pb2.AgentInfo:
    """One agent's versions from two sources; the later one's default wins."""
    return jobs_pb2.AgentInfo(
        name=known.name,
        versions=sorted({*known.versions, *info.versions}),
        default_version=info.default_version or known.default_version,
    )
