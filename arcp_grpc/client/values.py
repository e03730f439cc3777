"""What the client hands back: plain Python values, each with its protobuf message.

A backend wants the JSON its agent returned, not a ``google.protobuf.Value``, so every
value here is built once from the message the core sent and keeps that message in
``proto`` for those who want the wire form. A job's acceptance also keeps its bytes as the
core sent them (``Job.accepted_bytes``): for an idempotent replay those are the bytes of the
first acceptance, unchanged (§7.2). Building these values is pure (no I/O), so it is tested
without a socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from arcp_grpc.base.json_values import json_number, value_to_py
from arcp_grpc.errors import ARCPError
from arcp_grpc.v1 import errors_pb2, events_pb2, jobs_pb2, lease_pb2

__all__ = [
    "Agent",
    "Event",
    "Job",
    "JobInfo",
    "Outcome",
    "Submission",
    "Worker",
    "plain",
    "status_name",
]


def plain(message: Message) -> dict[str, Any]:
    """A message as JSON-ready Python data in the spec's vocabulary, the one the CLI's
    table, its ``--status`` values and its ``--json`` share: proto field names; an enum as
    the spec's word (``"status": "success"``, ``"level": "info"``, an `ErrorCode` as its §12
    code ``DUPLICATE_KEY``), not the protobuf name; 64-bit integers as numbers, not the
    strings protobuf's JSON mapping writes; whole numbers as ints (``google.protobuf.Value``
    holds only doubles, and ``{"count": 3}`` should not come back as ``3.0``)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    descriptor = cast(Descriptor, message.DESCRIPTOR)  # upb's class, typed as a union
    spoken: dict[str, Any] = _whole(_spec_words(descriptor, data))
    return spoken


# protoc's 64-bit integer types: JSON strings in protobuf's mapping, numbers here.
_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _spec_words(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (MessageToDict of a `descriptor` message) with enums and 64-bit integers
    rewritten, field by field; well-known types keep protobuf's JSON form."""
    for name, value in data.items():
        field = descriptor.fields_by_name.get(name)
        if field is None:
            continue
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            data[name] = {k: _spec_value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            data[name] = [_spec_value(field, v) for v in value]
        else:
            data[name] = _spec_value(field, value)
    return data


def _spec_value(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        return _enum_word(field.enum_type, value)
    if field.type in _INT64:
        return int(value)
    nested = field.message_type
    if nested is not None and not nested.full_name.startswith("google.protobuf."):
        return _spec_words(nested, value)
    return value


def _enum_word(enum: EnumDescriptor, name: str | int) -> str | int:
    """``JOB_STATUS_TIMED_OUT`` → ``timed_out``, ``LOG_LEVEL_INFO`` → ``info``,
    ``ERROR_CODE_DUPLICATE_KEY`` → ``DUPLICATE_KEY`` (§12 codes are upper case); a number
    this build does not know stays a number. buf's STANDARD lint makes every value carry
    the prefix of the zero value ``*_UNSPECIFIED``."""
    if not isinstance(name, str):
        return name
    word = name.removeprefix(enum.values_by_number[0].name.removesuffix("UNSPECIFIED"))
    return word if enum.full_name == errors_pb2.ErrorCode.DESCRIPTOR.full_name else word.lower()


def _whole(value: Any) -> Any:
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def status_name(status: jobs_pb2.JobStatus.ValueType) -> str:
    """``JOB_STATUS_TIMED_OUT`` → ``timed_out``: the spec's word for a job's status (§7.3),
    looked up rather than worked out on every outcome (issue 25)."""
    return _STATUS_WORDS.get(status) or str(status)  # a number this build does not know


_STATUS_WORDS: dict[int, str] = {
    value: str(_enum_word(jobs_pb2.JobStatus.DESCRIPTOR, name))
    for name, value in jobs_pb2.JobStatus.items()
}


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    """An aware UTC datetime; None for a field the core left unset."""
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def _lease(lease: lease_pb2.Lease) -> dict[str, list[str]]:
    return {ns: list(patterns.patterns) for ns, patterns in lease.capabilities.items()}


@dataclass(frozen=True)
class Submission:
    """One job to submit (§7.1), for `Client.submit_many`; `Client.submit` takes the same
    fields as arguments. ``lease`` maps a capability namespace to its patterns;
    ``budget`` maps a currency to an amount (``{"USD": "5.00"}``), requested as the lease's
    ``cost.budget`` patterns (§9.6)."""

    agent: str
    input: Any = None
    idempotency_key: str | None = None
    lease: Mapping[str, Sequence[str]] | None = None
    lease_expires_at: datetime | None = None
    budget: Mapping[str, str] | None = None
    max_runtime: int | None = None
    trace_id: str | None = None


@dataclass(frozen=True)
class Job:
    """An accepted job (``job.accepted``, §7.2). ``replay`` is true when the core answered
    an idempotent resubmission with the first acceptance; ``accepted_bytes`` are the
    ``JobAccepted`` bytes as the core sent them. The other fields are read from ``proto``
    when first asked for: a submit pays only for what its caller looks at."""

    job_id: str
    agent: str
    replay: bool
    accepted_bytes: bytes = field(repr=False)
    proto: jobs_pb2.JobAccepted = field(repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, replay: bool) -> Job:
        accepted = jobs_pb2.JobAccepted.FromString(data)
        return cls(accepted.job_id, accepted.agent, replay, data, accepted)

    @cached_property
    def accepted_at(self) -> datetime | None:
        return _time(self.proto.accepted_at, self.proto.HasField("accepted_at"))

    @cached_property
    def trace_id(self) -> str:
        return self.proto.trace_id

    @cached_property
    def lease(self) -> dict[str, list[str]]:
        """``{namespace: [patterns]}``, the lease granted (§9.2)."""
        return _lease(self.proto.lease)

    @cached_property
    def budget(self) -> dict[str, str]:
        """``{currency: amount}``, the budget counters at acceptance (§9.6)."""
        return dict(self.proto.budget)

    @cached_property
    def credentials(self) -> list[dict[str, Any]]:
        """The credentials provisioned for the job (§9.8): secrets, never log them."""
        return [plain(credential) for credential in self.proto.credentials]


@dataclass(frozen=True)
class Event:
    """One event of a job (§8). ``seq`` is its ``job_seq`` (gap-free from 1, §8.3);
    ``kind`` the event's type (``log``, ``progress``, ``result_chunk``, …) and ``body``
    its fields as plain data, built when first asked for (a follower that only counts or
    forwards events never pays for it)."""

    job_id: str
    seq: int
    kind: str
    proto: events_pb2.JobEvent = field(repr=False)

    @classmethod
    def from_proto(cls, event: events_pb2.JobEvent) -> Event:
        return cls(event.job_id, event.job_seq, event.WhichOneof("body") or "", event)

    @cached_property
    def body(self) -> dict[str, Any]:
        return plain(getattr(self.proto, self.kind)) if self.kind else {}


@dataclass(frozen=True)
class Outcome:
    """How a job ended (§7.3): ``status`` is ``success``, ``error``, ``cancelled`` or
    ``timed_out``; ``result`` the JSON the agent returned (None for a streamed result,
    which came as ``result_chunk`` events, §8.4), ``error`` the ARCP error of a job that
    did not succeed. ``result`` and ``completed_at`` are read from ``proto`` when first
    asked for, as `Job`'s fields are: a run that only checks ``ok`` does not convert them
    (issue 25)."""

    job_id: str
    status: str
    error: ARCPError | None
    proto: jobs_pb2.JobOutcome = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == "success"

    @classmethod
    def from_proto(cls, outcome: jobs_pb2.JobOutcome) -> Outcome:
        if outcome.HasField("error"):
            failed = outcome.error
            error = ARCPError.from_proto(failed.error)
            return cls(failed.job_id, status_name(failed.final_status), error, outcome)
        done = outcome.result
        return cls(done.job_id, status_name(done.final_status), None, outcome)

    @cached_property
    def result(self) -> Any:
        done = self.proto.result
        return value_to_py(done.value) if done.HasField("value") else None

    @cached_property
    def completed_at(self) -> datetime | None:
        ended = self.proto.error if self.proto.HasField("error") else self.proto.result
        return _time(ended.completed_at, ended.HasField("completed_at"))


@dataclass(frozen=True)
class JobInfo:
    """A job as `Client.get` and `Client.list` see it (§6.6): its status and, from `get`
    once it has ended, its ``outcome``. ``last_event_seq`` is where a `watch` would resume."""

    job_id: str
    agent: str
    status: str
    created_at: datetime | None
    completed_at: datetime | None
    trace_id: str
    parent_job_id: str
    last_event_seq: int
    outcome: Outcome | None
    proto: jobs_pb2.JobSummary = field(repr=False)

    @classmethod
    def from_proto(
        cls, summary: jobs_pb2.JobSummary, outcome: jobs_pb2.JobOutcome | None = None
    ) -> JobInfo:
        return cls(
            job_id=summary.job_id,
            agent=summary.agent,
            status=status_name(summary.status),
            created_at=_time(summary.created_at, summary.HasField("created_at")),
            completed_at=_time(summary.completed_at, summary.HasField("completed_at")),
            trace_id=summary.trace_id,
            parent_job_id=summary.parent_job_id,
            last_event_seq=summary.last_event_seq,
            outcome=Outcome.from_proto(outcome) if outcome is not None else None,
            proto=summary,
        )


@dataclass(frozen=True)
class Agent:
    """A registered agent with its versions and the one a bare name runs (§7.5)."""

    name: str
    versions: tuple[str, ...]
    default_version: str
    proto: jobs_pb2.AgentInfo = field(repr=False)

    @classmethod
    def from_proto(cls, info: jobs_pb2.AgentInfo) -> Agent:
        return cls(info.name, tuple(info.versions), info.default_version, info)


@dataclass(frozen=True)
class Worker:
    """A connected remote worker (issue 23): what it hosts, its slots, what it runs now,
    and the core node holding its stream."""

    name: str
    node_id: str
    agents: tuple[Agent, ...]
    slots: int
    running: int
    library: str
    proto: jobs_pb2.WorkerInfo = field(repr=False)

    @classmethod
    def from_proto(cls, info: jobs_pb2.WorkerInfo) -> Worker:
        agents = tuple(Agent.from_proto(agent) for agent in info.agents)
        return cls(info.name, info.node_id, agents, info.slots, info.running, info.library, info)
