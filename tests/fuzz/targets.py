"""Fuzz targets: bytes in, the edges' parsing and validation run in process.

Each target takes one input and either returns or raises. The documented
refusal is :class:`~arcp_grpc.errors.ARCPError` (in practice INVALID_REQUEST,
or a §12 code such as LEASE_SUBSET_VIOLATION that the rules name); anything
else, including an AssertionError from an oracle below, is a crash.

- ``client_frame``: the gateway's :func:`gateway.codec.decode_client_frame` on
  raw WebSocket text. Oracles: a frame the gateway accepts also passes the
  core's own checks of the same rules (the edges agree), and it renders back
  (:func:`~gateway.codec.encode_client_frame`) to a frame that decodes to the
  same request.
- ``connect_request``: the core's handling of one ``ConnectRequest`` as gRPC
  bytes, up to the point where state is touched: the request parser, the frame
  checks, and for a submit every check the runtime runs before it stores a job
  (agent reference, lease, expiry, max runtime, input value).
- ``job_request``: the same for the JobService requests; the first byte picks the
  RPC, the rest is its request message.

Shared by the pytest smoke run (`test_fuzz_smoke.py`) and the long atheris run
(`python -m tests.fuzz.atheris_main TARGET`, see docs/fuzzing.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from google.protobuf.message import Message

from arcp_grpc.auth import Principal
from arcp_grpc.base.agentref import parse_agent_ref
from arcp_grpc.base.json_values import value_to_py
from arcp_grpc.base.validate import (
    check_connect_request,
    check_id,
    check_job_request,
    check_submit,
    request_parser,
)
from arcp_grpc.errors import ARCPError, InvalidRequest
from arcp_grpc.lease.lease import Lease
from arcp_grpc.runtime import job_query
from arcp_grpc.runtime.admission import expires_at_of, max_runtime_of
from arcp_grpc.v1 import job_service_pb2, jobs_pb2
from arcp_grpc.v1 import session_service_pb2 as spb
from gateway.codec import decode_client_frame, encode_client_frame

__all__ = ["EXPECTED", "JOB_REQUESTS", "MAX_FRAME_BYTES", "TARGETS"]

EXPECTED: Final = (ARCPError,)
"""The documented refusals; any other exception is a crash."""

MAX_FRAME_BYTES: Final = 1024 * 1024  # the gateway's default max_frame_bytes

_PRINCIPAL: Final = Principal("fuzz")
_parse_connect: Final = request_parser(spb.ConnectRequest)
JOB_REQUESTS: Final[tuple[type[Message], ...]] = (
    job_service_pb2.SubmitJobRequest,
    job_service_pb2.GetJobRequest,
    job_service_pb2.ListJobsRequest,
    job_service_pb2.CancelJobRequest,
    job_service_pb2.WatchJobRequest,
    job_service_pb2.ListAgentsRequest,
)
"""The JobService request a `job_request` input's first byte selects (modulo)."""
_JOB_PARSERS: Final = tuple(request_parser(message) for message in JOB_REQUESTS)


def client_frame(data: bytes) -> None:
    frame = decode_client_frame(data, max_bytes=MAX_FRAME_BYTES)
    request = frame.request
    try:
        check_id(request.id, "id")
        check_connect_request(request, "")
        if request.HasField("submit"):
            check_submit(request.submit)
    except InvalidRequest as exc:
        raise AssertionError(f"the gateway accepted what the core refuses: {exc}") from exc
    again = decode_client_frame(encode_client_frame(request), max_bytes=4 * MAX_FRAME_BYTES)
    assert again.request == request, "a decoded frame does not survive its rendering"


def connect_request(data: bytes) -> None:
    request = _parse_connect(data)
    if isinstance(request, InvalidRequest):
        raise request
    check_id(request.id, "id")
    check_connect_request(request, "")
    kind = request.WhichOneof("frame")
    if kind == "submit":
        _submit(request.submit)
    elif kind == "list_jobs":
        listing = request.list_jobs
        job_query(_PRINCIPAL, listing.filter, listing.limit, listing.cursor)


def job_request(data: bytes) -> None:
    if not data:
        return
    request = _JOB_PARSERS[data[0] % len(_JOB_PARSERS)](data[1:])
    if isinstance(request, InvalidRequest):
        raise request
    check_job_request(request)
    if isinstance(request, job_service_pb2.SubmitJobRequest):
        _submit(request.submit)
    elif isinstance(request, job_service_pb2.ListJobsRequest):
        job_query(_PRINCIPAL, request.filter, request.page_size, request.page_token)


def _submit(submit: jobs_pb2.JobSubmit) -> None:
    """What `Admission._accept` checks before it stores anything, in its order."""
    check_submit(submit)
    parse_agent_ref(submit.agent)
    Lease.parse({ns: list(p.patterns) for ns, p in submit.lease_request.capabilities.items()})
    expires_at_of(submit, time.time())
    max_runtime_of(submit)
    if submit.HasField("input"):
        value_to_py(submit.input)


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "client_frame": client_frame,
    "connect_request": connect_request,
    "job_request": job_request,
}
