"""Both stores across restarts: finished jobs and their event logs stay readable,
jobs a dead process left running end with a retryable INTERNAL_ERROR, and
credentials left live are revoked by the next process (§9.8.2, §14). On
PostgreSQL the next process is a new node: it ends the dead one's jobs once that
node's heartbeat is older than `cluster.node_timeout_sec`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import grpc

from arcp_grpc.credentials import DevProvisioner
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.runtime.cluster import ClusterLimits
from arcp_grpc.server import CoreConfig
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import jobs_pb2, lease_pb2
from tests.conftest import (
    SAFETY,
    SPENDING,
    TOKENS,
    CoreFactory,
    bearer,
    error_code,
    new_stub,
    submit_request,
    wait_for_seq,
    watch_all,
)

_REPO = Path(__file__).resolve().parents[3]
_QUICK_TAKEOVER = ClusterLimits(node_timeout_sec=1.0, heartbeat_sec=0.2)
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from arcp_grpc.server import CoreConfig, start_core

    async def main() -> None:
        core = await start_core(
            CoreConfig(data_dir=Path(sys.argv[1]), tokens={tokens!r}, store_url=sys.argv[2])
        )
        print("PORT", core.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
).format(tokens=TOKENS)


async def test_finished_jobs_and_events_survive_a_restart(make_core: CoreFactory) -> None:
    core = await make_core()
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        jobs = []
        for agent, input_value in [("echo", {"x": [1, 2]}), ("chatty", {"events": 50})]:
            accepted = (
                await stub.SubmitJob(submit_request(agent, input_value), metadata=bearer())
            ).accepted
            jobs.append(accepted.job_id)
        failed = (
            await stub.SubmitJob(submit_request("counter", {"steps": -1}), metadata=bearer())
        ).accepted
        jobs.append(failed.job_id)
        before = {job_id: await watch_all(stub, job_id) for job_id in jobs}
        summaries = {
            job_id: (await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer()))
            for job_id in jobs
        }
    await core.stop(grace=1.0)

    again = await make_core()
    async with grpc.aio.insecure_channel(again.grpc_address) as channel:
        stub = new_stub(channel)
        for job_id in jobs:
            after = await watch_all(stub, job_id)
            assert after.events == before[job_id].events
            assert after.outcome == before[job_id].outcome
            got = await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer())
            assert got.job.status == summaries[job_id].job.status
            assert got.job.last_event_seq == len(after.events)
            assert got.outcome == summaries[job_id].outcome
        assert len(before[jobs[1]].events) == 50
        listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=bearer())
        assert {j.job_id for j in listed.jobs} == set(jobs)


async def test_a_job_running_when_the_process_died_ends_internal_error(
    make_core: CoreFactory, core_config: CoreConfig
) -> None:
    """A core in a child process is SIGKILLed mid-job; the next core on the same
    file ends that job with INTERNAL_ERROR (retryable) and keeps its events."""
    data_dir = core_config.data_dir
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(data_dir),
        core_config.store_url,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), SAFETY)
        port = int(line.split()[1])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = new_stub(channel)
            accepted = (
                await stub.SubmitJob(
                    submit_request("counter", {"steps": 100_000, "interval": 0.01}),
                    metadata=bearer(),
                )
            ).accepted
            seen = await wait_for_seq(stub, accepted.job_id, lambda e: e.job_seq >= 5)
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), SAFETY)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    core = await make_core(cluster=_QUICK_TAKEOVER)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        await watch_all(stub, accepted.job_id)  # at once on SQLite; after the takeover else
        got = await stub.GetJob(pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer())
        assert got.job.status == jobs_pb2.JOB_STATUS_ERROR
        assert got.outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
        assert error_code(got.outcome.error) == "INTERNAL_ERROR"
        assert got.outcome.error.error.retryable is True
        watched = await watch_all(stub, accepted.job_id)
        assert watched.outcome == got.outcome
        # Everything the dead process had delivered is still there, gap-free.
        assert len(watched.events) >= seen.job_seq
        assert watched.seqs == list(range(1, len(watched.events) + 1))
        assert got.job.last_event_seq == len(watched.events)
        # Its credential is no longer in the ledger of live credentials.
        assert await core.store.live_credentials() == []


class FlakyProvisioner(DevProvisioner):
    """The development provisioner with an upstream that can be down for revokes."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.failed = asyncio.Event()

    async def revoke(self, credential: lease_pb2.Credential) -> None:
        if self.failing:
            self.failed.set()
            raise ConnectionError("upstream unavailable")
        await super().revoke(credential)


async def test_revocation_is_retried_after_a_restart(make_core: CoreFactory) -> None:
    """§9.8.2, §14: a revocation that failed is retried by the next process."""
    provisioner = FlakyProvisioner()
    limits = RuntimeLimits(revoke_attempts=1)
    core = await make_core(provisioner=provisioner, limits=limits)
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        request = submit_request("echo", {}, lease=SPENDING)
        accepted = (await stub.SubmitJob(request, metadata=bearer())).accepted
        await watch_all(stub, accepted.job_id)
    await asyncio.wait_for(provisioner.failed.wait(), SAFETY)
    await core.stop(grace=1.0)
    (credential,) = accepted.credentials
    assert provisioner.is_live(credential.value)

    provisioner.failing = False
    again = await make_core(provisioner=provisioner, limits=limits)
    assert not provisioner.is_live(credential.value)
    assert await again.store.live_credentials() == []


async def test_stop_ends_running_jobs_with_retryable_internal_error(
    make_core: CoreFactory,
) -> None:
    """A graceful stop does not leave jobs running in the store either."""
    core = await make_core()
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        accepted = (
            await stub.SubmitJob(
                submit_request("counter", {"steps": 100_000, "interval": 0.01}),
                metadata=bearer(),
            )
        ).accepted
        await wait_for_seq(stub, accepted.job_id, lambda e: e.job_seq >= 2)
    await core.stop(grace=0.0)
    again = await make_core()
    async with grpc.aio.insecure_channel(again.grpc_address) as channel:
        got = await new_stub(channel).GetJob(
            pb.GetJobRequest(job_id=accepted.job_id), metadata=bearer()
        )
        assert error_code(got.outcome.error) == "INTERNAL_ERROR"
        assert got.outcome.error.error.retryable is True
