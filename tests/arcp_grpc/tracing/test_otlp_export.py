"""Traces end to end (issue 24, §11): a real `serve` exports over OTLP/gRPC to a real
receiver; a job submitted through the gateway with an ARCP `trace_id` yields one trace
holding the gateway's, the core's and its delegated child's spans, each under the one
that caused it; a backend's gRPC `traceparent` is continued the same way."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc, jobs_pb2
from tests.arcp_grpc.tracing.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.gateway.conftest import SAFETY, open_raw
from tests.serve_process import ServeProcess, clean_env

SERVE_ARGS = ("--grpc-port", "0", "--gateway-port", "0", "--no-metrics")
SERVICE = "arcp-traces-test"


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    await otlp.start()
    try:
        yield otlp
    finally:
        await otlp.stop()


@pytest.fixture
async def served(tmp_path: Path, receiver: OtlpReceiver) -> AsyncIterator[ServeProcess]:
    """`serve` with only the standard OTEL_* variables pointing at the receiver."""
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="50",  # ms: export soon after a span ends
        OTEL_SERVICE_NAME=SERVICE,
    )
    process = ServeProcess(tmp_path, *SERVE_ARGS, env=env)
    await asyncio.to_thread(process.start)  # the receiver runs on this loop meanwhile
    try:
        yield process
    finally:
        await asyncio.to_thread(process.stop)


def _one(spans: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def _names(spans: list[ReceivedSpan]) -> list[str]:
    return sorted(s.name for s in spans)


async def test_a_submit_through_the_gateway_is_one_trace_down_to_the_delegated_child(
    served: ServeProcess, receiver: OtlpReceiver
) -> None:
    trace_id = secrets.token_hex(16)
    client = await open_raw(served.info["gateway"])
    try:
        welcome = await client.hello(served.token)
        assert welcome["type"] == "session.welcome", welcome
        submit = {"agent": "delegator", "input": {"hello": "traces"}}
        submit["lease_request"] = {"agent.delegate": ["echo"]}
        request_id = await client.send("job.submit", submit, trace_id=trace_id)
        accepted = await client.reply_to(request_id)
        assert accepted["type"] == "job.accepted", accepted
        assert accepted["payload"]["trace_id"] == trace_id
        parent_id = accepted["payload"]["job_id"]
        frames = await client.until_terminal(parent_id)
        assert frames[-1]["type"] == "job.result", frames[-1]
        result = frames[-1]["payload"]["result"]
        assert result["child_result"] == {"hello": "traces"}
    finally:
        await client.close()

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = _names([s for s in spans if s.trace_id == trace_id])
        return names.count("arcp.run") == 2 and "arcp.deliver" in names

    spans = await receiver.wait_for(complete, SAFETY)
    traced = [s for s in spans if s.trace_id == trace_id]
    assert {s.service for s in traced} == {SERVICE}
    gateway = _one(traced, "arcp.gateway.submit")
    submit_span = _one(traced, "arcp.submit")
    run = _one(traced, "arcp.run", **{"arcp.job_id": parent_id})
    delegate = _one(traced, "arcp.delegate", **{"arcp.parent_job_id": parent_id})
    child_id = delegate.attributes["arcp.job_id"]
    assert child_id == result["child_job_id"]
    child_run = _one(traced, "arcp.run", **{"arcp.job_id": child_id})
    accept = _one(traced, "arcp.accept", **{"arcp.job_id": parent_id})
    child_accept = _one(traced, "arcp.accept", **{"arcp.job_id": child_id})
    deliver = _one(traced, "arcp.deliver", **{"arcp.job_id": parent_id})

    # The client named the trace and no span: the gateway's span is its root.
    assert gateway.parent_span_id == ""
    assert submit_span.parent_span_id == gateway.span_id  # across the gateway → core hop
    assert submit_span.attributes["arcp.job_id"] == parent_id
    assert accept.parent_span_id == submit_span.span_id
    assert run.parent_span_id == submit_span.span_id
    assert delegate.parent_span_id == run.span_id  # the agent delegated while running
    assert child_accept.parent_span_id == delegate.span_id
    assert child_run.parent_span_id == delegate.span_id
    assert deliver.parent_span_id == gateway.span_id
    assert run.attributes["arcp.status"] == child_run.attributes["arcp.status"]
    assert run.attributes["arcp.status"] == "success"
    assert not [s for s in traced if s.error]

    # The session is a trace of its own: it carries many jobs, each in its trace.
    session = _one(spans, "arcp.session", **{"arcp.session_id": welcome["payload"]["session_id"]})
    assert session.trace_id != trace_id


async def test_a_backend_traceparent_is_continued_by_the_job_and_its_spans(
    served: ServeProcess, receiver: OtlpReceiver
) -> None:
    backend_trace, backend_span = secrets.token_hex(16), secrets.token_hex(8)
    metadata = (
        ("authorization", f"Bearer {served.token}"),
        ("traceparent", f"00-{backend_trace}-{backend_span}-01"),
    )
    async with grpc.aio.insecure_channel(served.info["grpc"]) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.SubmitJobRequest(submit=jobs_pb2.JobSubmit(agent="echo"))
        response = await stub.SubmitJob(request, metadata=metadata, timeout=SAFETY)
    # No ARCP trace_id in the submit: the job takes the backend's (§11).
    assert response.accepted.trace_id == backend_trace
    job_id = response.accepted.job_id

    def complete(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.name == "arcp.run" and s.attributes.get("arcp.job_id") == job_id for s in spans
        )

    spans = await receiver.wait_for(complete, SAFETY)
    submit_span = _one(spans, "arcp.submit", **{"arcp.job_id": job_id})
    run = _one(spans, "arcp.run", **{"arcp.job_id": job_id})
    assert submit_span.trace_id == run.trace_id == backend_trace
    assert submit_span.parent_span_id == backend_span
    assert run.parent_span_id == submit_span.span_id


async def test_a_failed_job_marks_its_run_span_failed_with_the_arcp_code(
    served: ServeProcess, receiver: OtlpReceiver
) -> None:
    client = await open_raw(served.info["gateway"])
    try:
        await client.hello(served.token)
        # Delegating without a lease that grants it: PERMISSION_DENIED (§9.3).
        request_id = await client.send("job.submit", {"agent": "delegator", "input": {}})
        accepted = await client.reply_to(request_id)
        job_id = accepted["payload"]["job_id"]
        frames = await client.until_terminal(job_id)
        assert frames[-1]["type"] == "job.error", frames[-1]
    finally:
        await client.close()

    def complete(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.name == "arcp.run" and s.attributes.get("arcp.job_id") == job_id for s in spans
        )

    spans = await receiver.wait_for(complete, SAFETY)
    run = _one(spans, "arcp.run", **{"arcp.job_id": job_id})
    assert run.error.startswith("PERMISSION_DENIED: "), run.error
    assert run.attributes["arcp.status"] == "error"
    assert not [s for s in spans if s.name == "arcp.delegate" and s.trace_id == run.trace_id]
