"""Hostile input over a real grpc.aio server on 127.0.0.1: every refusal is
INVALID_ARGUMENT with one ErrorInfo (reason INVALID_REQUEST, not retryable) naming
the field, nothing is stored, and the stream or server carries on (§11, §12, §14).

Raw bytes go through `channel.unary_unary` / `stream_stream` with an identity
serializer, as a client in another language (or an attacker) would send them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import errors_pb2, jobs_pb2
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import session_service_pb2 as spb
from tests.conftest import SAFETY, bearer, submit_request

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub

_MB = 1024 * 1024


def _identity(data: bytes) -> bytes:
    return data


def _error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of a failed call (AIP-193)."""
    status = rpc_status.from_call(exc)
    assert status is not None, f"no google.rpc.Status on {exc.code()}: {exc.details()}"
    [packed] = status.details
    info = error_details_pb2.ErrorInfo()
    assert packed.Unpack(info)
    return info


def _assert_invalid(exc: grpc.aio.AioRpcError, field: str) -> None:
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
    info = _error_info(exc)
    assert info.reason == "INVALID_REQUEST"
    assert info.metadata["retryable"] == "false"  # a retrying client would loop
    assert info.metadata["field"] == field


async def _raw_unary(channel: grpc.aio.Channel, method: str, body: bytes) -> bytes:
    call = channel.unary_unary(
        f"/arcp.v1.JobService/{method}",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    response: bytes = await call(body, metadata=bearer(), timeout=SAFETY)
    return response


async def _no_jobs(stub: Stub) -> None:
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert list(listed.jobs) == []


# -- trace_id and other identifiers on JobService --------------------------------------


@pytest.mark.parametrize(
    "trace_id",
    [
        "a" * _MB,  # the probe: 150 of these took the core from 171 to 582 MiB
        "4bf92f3577b34da6a3ce929d0e0e473\n",  # 31 hex and a newline: a forged log line
        "4BF92F3577B34DA6A3CE929D0E0E4736",  # uppercase is not W3C
        "0" * 32,  # all zero is invalid (W3C)
        "4bf92f3577b34da6a3ce929d0e0e4736-00",
    ],
)
async def test_submit_refuses_a_trace_id_that_is_not_w3c(
    stub: Stub, channel: grpc.aio.Channel, trace_id: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("echo", {"x": 1}, trace_id=trace_id), metadata=bearer())
    _assert_invalid(caught.value, "trace_id")
    assert len(caught.value.details() or "") < 200  # the refusal never echoes the input
    await _no_jobs(stub)  # nothing stored, nothing held in memory for it


async def test_a_w3c_trace_id_is_kept(stub: Stub) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    accepted = await stub.SubmitJob(
        submit_request("echo", {}, trace_id=trace_id), metadata=bearer()
    )
    assert accepted.accepted.trace_id == trace_id


async def test_submit_refuses_an_overlong_idempotency_key_agent_and_lease(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("echo", key="k" * 257), metadata=bearer())
    _assert_invalid(caught.value, "idempotency_key")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("e" * 100_000), metadata=bearer())
    _assert_invalid(caught.value, "agent")
    wide = {"fs.read": [f"/{index}/" + "p" * 1000 for index in range(100)]}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(submit_request("echo", lease=wide), metadata=bearer())
    _assert_invalid(caught.value, "lease_request")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.GetJob(pb.GetJobRequest(job_id="j" * 129), metadata=bearer()), "job_id"),
        (lambda s: s.GetJob(pb.GetJobRequest(job_id="job\n1"), metadata=bearer()), "job_id"),
        (
            lambda s: s.CancelJob(
                pb.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id="job_1", reason="r" * 1025)),
                metadata=bearer(),
            ),
            "cancel.reason",
        ),
        (
            lambda s: s.ListJobs(pb.ListJobsRequest(page_token="c" * 513), metadata=bearer()),
            "page_token",
        ),
        (
            lambda s: s.ListJobs(
                pb.ListJobsRequest(filter=jobs_pb2.ListJobsFilter(agent="a" * 257)),
                metadata=bearer(),
            ),
            "filter.agent",
        ),
    ],
)
async def test_identifiers_and_texts_are_capped(stub: Stub, call: object, field: str) -> None:
    assert callable(call)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(stub)
    _assert_invalid(caught.value, field)


async def test_watch_refuses_an_overlong_job_id(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.WatchJob(pb.WatchJobRequest(job_id="j" * 129), metadata=bearer()):
            pass
    _assert_invalid(caught.value, "job_id")


# -- malformed bodies: INVALID_ARGUMENT with ErrorInfo, never UNKNOWN or INTERNAL -------


@pytest.mark.parametrize("method", ["SubmitJob", "GetJob", "ListJobs", "CancelJob", "ListAgents"])
async def test_garbage_bytes_are_invalid_argument(channel: grpc.aio.Channel, method: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw_unary(channel, method, b"\xff\xff\xff\xff garbage \x00\x01")
    _assert_invalid(caught.value, "$")


async def test_garbage_bytes_to_watch_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream(
        "/arcp.v1.JobService/WatchJob",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call(b"\x0a\xff\xff\xff\xff\x0f", metadata=bearer(), timeout=SAFETY):
            pass
    _assert_invalid(caught.value, "$")


def _nested(depth: int) -> struct_pb2.Value:
    value = struct_pb2.Value(string_value="leaf")
    for _ in range(depth):
        outer = struct_pb2.Value()
        outer.list_value.values.add().CopyFrom(value)
        value = outer
    return value


async def test_a_value_nested_60_deep_is_invalid_argument(
    stub: Stub, channel: grpc.aio.Channel
) -> None:
    request = submit_request("echo")
    request.submit.input.CopyFrom(_nested(60))  # past protobuf's recursion limit
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw_unary(channel, "SubmitJob", request.SerializeToString())
    _assert_invalid(caught.value, "$")
    await _no_jobs(stub)


async def test_a_value_nested_past_the_gateway_limit_is_refused_by_the_core(stub: Stub) -> None:
    """25 levels parse, but the gateway refuses them (MAX_VALUE_DEPTH): so does the core."""
    request = submit_request("echo")
    request.submit.input.CopyFrom(_nested(25))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(request, metadata=bearer())
    _assert_invalid(caught.value, "input" + "[0]" * 24)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_nan_and_infinity_in_input_are_invalid_argument(stub: Stub, number: float) -> None:
    request = submit_request("echo")
    request.submit.input.struct_value.fields["x"].list_value.values.add(number_value=number)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(request, metadata=bearer())
    _assert_invalid(caught.value, "input.x[0]")
    await _no_jobs(stub)


async def test_created_after_beyond_year_9999_is_invalid_argument(stub: Stub) -> None:
    listing = pb.ListJobsRequest()
    listing.filter.created_after.seconds = 2**62
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListJobs(listing, metadata=bearer())
    _assert_invalid(caught.value, "filter.created_after")


# -- SessionService frames: a direct gRPC client bypasses the gateway ------------------


class _RawSession:
    """One Connect stream fed raw bytes; replies read one by one (batches unpacked)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = channel.stream_stream(
            "/arcp.v1.SessionService/Connect",
            request_serializer=_identity,
            response_deserializer=spb.ConnectResponse.FromString,
        )(timeout=SAFETY)
        self._pending: list[spb.ConnectResponse] = []

    async def send(self, data: bytes | spb.ConnectRequest) -> None:
        await self._call.write(data if isinstance(data, bytes) else data.SerializeToString())

    async def reply(self) -> spb.ConnectResponse:
        while not self._pending:
            message = await asyncio.wait_for(self._call.read(), SAFETY)
            assert isinstance(message, spb.ConnectResponse), message
            self._pending = list(message.frames) or [message]
        return self._pending.pop(0)

    async def replies(self) -> AsyncIterator[spb.ConnectResponse]:
        while True:
            yield await self.reply()

    def close(self) -> None:
        self._call.cancel()


@pytest.fixture
async def session(core: RunningCore) -> AsyncIterator[_RawSession]:
    async with grpc.aio.insecure_channel(core.grpc_address) as chan:
        raw = _RawSession(chan)
        hello = spb.ConnectRequest(id="01HELLO0000000000000000000")
        hello.hello.auth.token = "tok-alice"
        hello.hello.capabilities.features.append("list_jobs")
        await raw.send(hello)
        welcome = await raw.reply()
        assert welcome.HasField("welcome"), welcome
        yield raw
        raw.close()


def _field_of(reply: spb.ConnectResponse) -> str:
    assert reply.HasField("error"), reply
    error = reply.error.error
    assert error.code == errors_pb2.ERROR_CODE_INVALID_REQUEST
    assert not error.retryable
    return error.details.fields["field"].string_value


async def _still_serving(raw: _RawSession) -> None:
    ping = spb.ConnectRequest(id="01PING00000000000000000000")
    ping.ping.nonce = "still-there"
    await raw.send(ping)
    pong = await raw.reply()
    assert pong.pong.ping_nonce == "still-there"


async def test_a_session_submit_with_a_1mb_trace_id_is_refused(
    session: _RawSession, stub: Stub
) -> None:
    submit = spb.ConnectRequest(id="01SUBMIT000000000000000000")
    submit.submit.agent = "echo"
    submit.submit.trace_id = "f" * _MB
    await session.send(submit)
    reply = await session.reply()
    assert _field_of(reply) == "submit.trace_id"
    assert reply.request_id == submit.id
    await _still_serving(session)
    await _no_jobs(stub)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda r: setattr(r.cancel, "reason", "r" * 1025), "cancel.reason"),
        (lambda r: setattr(r.subscribe, "job_id", "j" * 129), "subscribe.job_id"),
        (lambda r: setattr(r.unsubscribe, "job_id", "job\r\n1"), "unsubscribe.job_id"),
        (lambda r: setattr(r.list_jobs, "cursor", "c" * 513), "list_jobs.cursor"),
        (lambda r: setattr(r.ping, "nonce", "n" * 257), "ping.nonce"),
        (
            lambda r: setattr(r.list_jobs.filter.created_after, "seconds", 2**62),
            "list_jobs.filter.created_after",
        ),
    ],
)
async def test_session_frames_are_checked_by_the_core(
    session: _RawSession, build: object, field: str
) -> None:
    request = spb.ConnectRequest(id="01FRAME0000000000000000000")
    assert callable(build)
    build(request)
    await session.send(request)
    reply = await session.reply()
    assert _field_of(reply) == field
    assert reply.request_id == request.id
    await _still_serving(session)


async def test_an_overlong_envelope_id_is_refused_and_not_echoed(session: _RawSession) -> None:
    ping = spb.ConnectRequest(id="i" * _MB)
    ping.ping.nonce = "n"
    await session.send(ping)
    reply = await session.reply()
    assert _field_of(reply) == "id"
    assert reply.request_id == ""  # a 1 MB id is not sent back
    await _still_serving(session)


async def test_garbage_bytes_on_a_session_are_a_request_error(session: _RawSession) -> None:
    await session.send(b"\xff\xff\xff\xff garbage")
    reply = await session.reply()
    assert _field_of(reply) == "$"
    await _still_serving(session)


def _rss_bytes() -> int:
    """The resident size once glibc has returned what it holds freed (what is still
    live, not what the allocator keeps around for reuse)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
async def test_the_probe_150_submits_with_a_1mb_trace_id_leave_no_memory_behind(
    stub: Stub,
) -> None:
    """The attacker's probe: before, 150 of these took the core from 171 to 582 MiB and
    3 MB of disk a job. Now each is refused before anything is kept."""
    request = submit_request("echo", trace_id="e" * _MB)
    # A first round fills grpc's buffers and pools for 1 MiB messages (~30 MiB, once);
    # what the second round adds is what the core keeps per submit (477 MiB before).
    for _ in range(150):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.SubmitJob(request, metadata=bearer())
    before = _rss_bytes()
    for _ in range(150):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitJob(request, metadata=bearer())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    grown = _rss_bytes() - before
    assert grown < 64 * _MB, f"{grown / _MB:.0f} MiB kept by 150 refused submits"
    await _no_jobs(stub)


# -- listing cursors: any bytes (§6.6) ---------------------------------------------------


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor is opaque to a client, so whatever it sends that this runtime did not issue is
# INVALID_REQUEST (§12) on both stores; a NUL byte reached PostgreSQL, which refused the
# text (INTERNAL and a traceback per call).
_NOT_ISSUED = [
    pytest.param("\x00", id="nul"),
    pytest.param("not-a-cursor!", id="not-base64"),
    pytest.param("é", id="not-ascii"),
    pytest.param(_cursor(b"garbage"), id="base64-of-garbage"),
    pytest.param(_cursor(b"\xff\xfe|job_1"), id="base64-of-bytes"),
    pytest.param(_cursor(b"1700000000.5|job_\x00"), id="nul-in-the-position"),
    pytest.param("\x00" + _cursor(b"1700000000.5|job_1"), id="nul-before-a-good-cursor"),
    pytest.param(_cursor(b"nan|job_1"), id="not-a-time"),
    pytest.param(_cursor(b"1700000000.5|" + b"j" * 370), id="oversize-position"),
]


@pytest.mark.parametrize("cursor", _NOT_ISSUED)
async def test_a_list_jobs_page_token_not_issued_here_is_invalid(stub: Stub, cursor: str) -> None:
    await stub.SubmitJob(submit_request("echo", {"x": 1}), metadata=bearer())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListJobs(pb.ListJobsRequest(page_token=cursor), metadata=bearer())
    _assert_invalid(caught.value, "cursor")
    listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
    assert len(listed.jobs) == 1  # the core carries on


@pytest.mark.parametrize("cursor", _NOT_ISSUED)
async def test_a_session_list_jobs_cursor_not_issued_here_is_invalid(
    session: _RawSession, cursor: str
) -> None:
    request = spb.ConnectRequest(id="01LIST00000000000000000000")
    request.list_jobs.cursor = cursor
    await session.send(request)
    reply = await session.reply()
    assert _field_of(reply) == "cursor"
    assert reply.request_id == request.id
    await _still_serving(session)
