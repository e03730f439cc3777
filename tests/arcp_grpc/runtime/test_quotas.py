"""Per-principal and global caps (§14 SHOULD) on gRPC, and their one mapping
(DESIGN.md "Quotas"): `RESOURCE_EXHAUSTED` with a `google.rpc.QuotaFailure` and
a `google.rpc.RetryInfo` beside the `ErrorInfo` whose reason is the §12 code
`INTERNAL_ERROR`. The caps come from `arcp_grpc.runtime.quotas`, scaled down here."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.errors import ARCPError, InternalError, QuotaExceeded
from arcp_grpc.grpc_status import ERROR_DOMAIN, rich_status
from arcp_grpc.runtime.quotas import QuotaLimits, Quotas
from arcp_grpc.v1 import job_service_pb2, jobs_pb2
from tests.conftest import CoreFactory, arcp_error, bearer, new_stub, submit_request

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub as Stub


def _details(status: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for packed in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.QuotaFailure,
            error_details_pb2.RetryInfo,
        ):
            message = kind()
            if packed.Is(message.DESCRIPTOR):
                packed.Unpack(message)
                found[kind.__name__] = message
    return found


async def test_a_job_over_the_cap_is_resource_exhausted_with_quota_and_retry_info(
    make_core: CoreFactory,
) -> None:
    gate = asyncio.Event()

    async def wait_for_gate(ctx: JobContext, input_value: Any) -> Any:
        await gate.wait()
        return None

    agents = AgentRegistry()
    agents.register("gate", "1.0.0", wait_for_gate)
    quotas = QuotaLimits(max_running_jobs_per_principal=2, retry_after_ms=1_500)
    core = await make_core(agents=agents, quotas=quotas)
    try:
        async with grpc.aio.insecure_channel(core.grpc_address) as channel:
            stub: Stub = new_stub(channel)
            for _ in range(2):
                await stub.SubmitJob(submit_request("gate"), metadata=bearer())
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitJob(submit_request("gate"), metadata=bearer())
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(refused.value)
            assert status is not None
            found = _details(status)
            assert found["ErrorInfo"].reason == "INTERNAL_ERROR"
            assert found["ErrorInfo"].domain == ERROR_DOMAIN
            assert found["ErrorInfo"].metadata["reason"] == "QUOTA_EXCEEDED"
            violation = found["QuotaFailure"].violations[0]
            assert violation.subject == "max_running_jobs_per_principal"
            assert found["RetryInfo"].retry_delay.ToMilliseconds() == 1_500
            error = arcp_error(refused.value)
            assert isinstance(error, QuotaExceeded)
            assert (error.limit, error.retry_after_ms, error.retryable) == (
                "max_running_jobs_per_principal",
                1_500,
                True,
            )
            # Another principal is unaffected.
            await stub.SubmitJob(submit_request("gate"), metadata=bearer("tok-bob"))
    finally:
        gate.set()


async def test_an_idempotent_replay_is_not_a_new_job(make_core: CoreFactory) -> None:
    """A resubmit with the same key replays the acceptance (§7.2): it adds no job, so a
    principal at its cap still gets its lost answer back."""
    core = await make_core(quotas=QuotaLimits(max_running_jobs_per_principal=1))
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub: Stub = new_stub(channel)
        request = submit_request("counter", {"steps": 50, "interval": 0.2}, key="k1")
        first = await stub.SubmitJob(request, metadata=bearer())
        again = await stub.SubmitJob(request, metadata=bearer())
        assert again.accepted == first.accepted
        await stub.CancelJob(_cancel(first.accepted.job_id), metadata=bearer())


def _cancel(job_id: str) -> job_service_pb2.CancelJobRequest:
    return job_service_pb2.CancelJobRequest(cancel=jobs_pb2.JobCancel(job_id=job_id))


# -- the pure parts ----------------------------------------------------------


def test_a_per_principal_override_replaces_the_default_for_that_principal_only() -> None:
    quotas = Quotas(
        QuotaLimits(
            max_sessions_per_principal=2,
            overrides={"batch.max_sessions_per_principal": 5},
        )
    )
    quotas.check_session("batch", held=4, total=4)
    with pytest.raises(QuotaExceeded) as refused:
        quotas.check_session("alice", held=2, total=4)
    assert refused.value.limit == "max_sessions_per_principal"
    with pytest.raises(QuotaExceeded):
        quotas.check_session("batch", held=5, total=5)


def test_the_quota_error_survives_the_contract_both_ways() -> None:
    """ARCP wire (`ErrorDetail`, a Struct: numbers are doubles) and gRPC (`ErrorInfo`
    metadata: strings) both rebuild the same typed error."""
    error = QuotaExceeded.of("max_sessions", 750, "too many")
    back = ARCPError.from_proto(error.to_proto())
    assert isinstance(back, QuotaExceeded)
    assert back.details == {
        "reason": "QUOTA_EXCEEDED",
        "limit": "max_sessions",
        "retry_after_ms": 750,
    }
    assert back.retryable is True
    status = rich_status(error)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    # Any other INTERNAL_ERROR stays what it was.
    plain = ARCPError.from_proto(InternalError("boom").to_proto())
    assert type(plain) is InternalError
    assert rich_status(InternalError("boom")).code == grpc.StatusCode.INTERNAL.value[0]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            lambda q: q.check_job("alice", running=1, total=1),
            "principal 'alice' holds 1 running job, its cap is 1",
        ),
        (
            lambda q: q.check_job("bob", running=0, total=2),
            "the runtime holds 2 running jobs, its cap is 2",
        ),
        (
            lambda q: q.check_session("alice", held=1, total=1),
            "principal 'alice' holds 1 session, its cap is 1",
        ),
        (
            lambda q: q.check_held_bytes("alice", held=1),
            "principal 'alice' holds 1 byte held for sessions, its cap is 1",
        ),
    ],
)
def test_a_refusal_counts_in_words_that_agree_with_the_count(check: Any, message: str) -> None:
    quotas = Quotas(
        QuotaLimits(
            max_running_jobs_per_principal=1,
            max_running_jobs=2,
            max_sessions_per_principal=1,
            max_held_bytes_per_principal=1,
        )
    )
    with pytest.raises(QuotaExceeded) as refused:
        check(quotas)
    assert str(refused.value).startswith(message + " ("), str(refused.value)
