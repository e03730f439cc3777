"""The client through faults, against real `serve` processes: a watch across a restart of
the core, a submit whose reply was lost, and a quota refusal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from arcp_grpc.client import Client, RetryPolicy, Unavailable
from arcp_grpc.errors import QuotaExceeded
from tests.arcp_grpc.client.conftest import SERVE_ARGS
from tests.arcp_grpc.client.relay import Relay
from tests.conftest import SAFETY
from tests.serve_process import ServeProcess


async def test_watch_resumes_across_a_restart_of_the_core_with_every_event_once(
    tmp_path: Path,
) -> None:
    """§8.3: the events are in the store; a watch whose stream dropped (the core was
    killed mid-job) reopens from the last job_seq it yielded once the core is back on
    the same port, and yields each event exactly once."""
    first = ServeProcess(tmp_path, *SERVE_ARGS)
    first.start()
    port = first.info["grpc"].rsplit(":", 1)[1]
    restarted = ServeProcess(tmp_path, "--grpc-port", port, "--gateway-port", "0", "--no-metrics")
    try:
        async with await Client.connect(first.info["grpc"], token=first.token) as client:
            job = await client.submit("counter", {"steps": 40, "interval": 0.05})
            watch = client.watch(job.job_id)
            seen: list[int] = []
            async for event in watch:
                seen.append(event.seq)
                if len(seen) == 5:
                    # The core records events this watch has not taken yet; then it is
                    # killed (SIGKILL) mid-job and the stream drops.
                    await asyncio.sleep(0.5)
                    first.stop()
                    await asyncio.to_thread(restarted.start)
            assert watch.outcome is not None
            everything = [event.seq async for event in client.watch(job.job_id)]
        assert len(seen) > 5  # events recorded before the kill, not yet taken, came through
        assert seen == everything == list(range(1, len(everything) + 1))
    finally:
        first.stop()
        restarted.stop()


async def test_a_retried_submit_after_a_lost_reply_is_one_job(
    served: ServeProcess, client: Client
) -> None:
    """The first SubmitJob reaches the core and creates the job; its reply is lost and the
    connection dropped. Under a retry policy the client repeats the submit with the same
    generated idempotency key: the answer is the replay of that job, not a second one."""
    host, port = served.info["grpc"].rsplit(":", 1)
    relay = Relay(host, int(port))
    await relay.start()
    retry = RetryPolicy(attempts=5, initial_backoff=0.05)
    async with await Client.connect(relay.address, token=served.token, retry=retry) as flaky:
        try:
            await flaky.agents()  # the connection is up before replies are held
            relay.hold_replies = True
            submitting = asyncio.create_task(flaky.submit("greeter", {"name": "once"}))
            created = await _wait_for_jobs(client, "greeter", 1)
            relay.hold_replies = False
            relay.cut()
            job = await asyncio.wait_for(submitting, SAFETY)
        finally:
            await relay.close()
    assert job.replay
    assert [job.job_id] == created == await _jobs(client, "greeter")


async def test_without_a_retry_policy_a_lost_reply_is_unavailable(
    served: ServeProcess,
) -> None:
    host, port = served.info["grpc"].rsplit(":", 1)
    relay = Relay(host, int(port))
    await relay.start()
    async with await Client.connect(relay.address, token=served.token) as flaky:
        try:
            await flaky.agents()
            relay.hold_replies = True
            submitting = asyncio.create_task(flaky.submit("echo", {"lost": True}))
            await asyncio.sleep(0.3)
            relay.cut()
            with pytest.raises(Unavailable) as dropped:
                await asyncio.wait_for(submitting, SAFETY)
            assert dropped.value.retryable
        finally:
            await relay.close()


async def test_a_quota_refusal_surfaces_retry_after_and_the_policy_waits_it(
    tmp_path: Path,
) -> None:
    """§14 quota: RESOURCE_EXHAUSTED with RetryInfo → QuotaExceeded, retryable, whose
    ``retry_after`` is the core's ``limits.retry_after_ms``; a retry policy waits that
    long before its repeat (not its own 0.01 s backoff)."""
    served = ServeProcess(
        tmp_path, *SERVE_ARGS,
        "--set", "limits.max_running_jobs_per_principal=1",
        "--set", "limits.retry_after_ms=1500",
    )  # fmt: skip
    served.start()
    try:
        async with await Client.connect(served.info["grpc"], token=served.token) as client:
            running = await client.submit("counter", {"steps": 1000, "interval": 0.05})
            try:
                await client.submit("echo", {})
            except QuotaExceeded as exc:
                refused = exc
            else:
                raise AssertionError("the second running job was admitted")
            assert (refused.code, refused.retryable) == ("INTERNAL_ERROR", True)
            assert refused.retry_after == 1.5
            assert refused.limit == "max_running_jobs_per_principal"
            retry = RetryPolicy(attempts=2, initial_backoff=0.01)
            async with await Client.connect(
                served.info["grpc"], token=served.token, retry=retry
            ) as patient:
                started = time.monotonic()
                try:
                    await patient.submit("echo", {})
                except QuotaExceeded:
                    waited = time.monotonic() - started
                else:
                    raise AssertionError("the repeat was admitted while the job ran")
                assert waited >= 1.4  # the repeat came after retry_after, not 0.01 s
                await client.cancel(running.job_id)
                await client.watch(running.job_id).wait()
                job = await patient.submit("echo", {"later": True})
            assert (await client.watch(job.job_id).wait()).result == {"later": True}
    finally:
        served.stop()


async def _jobs(client: Client, agent: str) -> list[str]:
    return [info.job_id async for info in client.list(agent=agent)]


async def _wait_for_jobs(client: Client, agent: str, count: int) -> list[str]:
    deadline = time.monotonic() + SAFETY
    while len(found := await _jobs(client, agent)) < count:
        assert time.monotonic() < deadline, f"no {agent} job was created"
        await asyncio.sleep(0.05)
    return found
