"""A worker speaking `arcp.v1.WorkerService` by hand, from the generated stubs: what a
worker in another language does, and what a misbehaving one may try. The tests use it
where the core, not a well-behaved worker library, must be what decides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from grpc import aio

from arcp_grpc.v1 import jobs_pb2, worker_service_pb2_grpc
from arcp_grpc.v1 import worker_service_pb2 as pb

__all__ = ["RawWorker"]

SAFETY = 30.0


class RawWorker:
    """One Work stream; `recv` skips heartbeats and credits."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = aio.insecure_channel(address)
        self._out: asyncio.Queue[pb.WorkRequest | None] = asyncio.Queue()
        stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._call = stub.Work(self._requests(), metadata=(("authorization", f"Bearer {token}"),))
        self._responses = aiter(self._call)
        self._step = 0

    async def _requests(self) -> AsyncIterator[pb.WorkRequest]:
        while (request := await self._out.get()) is not None:
            yield request

    async def register(self, *agents: str, slots: int = 1) -> pb.WorkerWelcome:
        infos = [
            jobs_pb2.AgentInfo(name=a, versions=["1.0.0"], default_version="1.0.0") for a in agents
        ]
        self.send(pb.WorkRequest(register=pb.WorkerRegister(agents=infos, slots=slots)))
        return (await self.recv("welcome")).welcome

    def send(self, request: pb.WorkRequest) -> None:
        self._out.put_nowait(request)

    async def recv(self, kind: str) -> pb.WorkResponse:
        """The next message of `kind`, skipping heartbeats, credits and budget updates."""
        while True:
            response = await asyncio.wait_for(anext(self._responses), SAFETY)
            got = response.WhichOneof("kind")
            if got == kind:
                return response
            if got not in ("heartbeat", "credit", "budget"):
                raise AssertionError(f"expected {kind}, got {response}")

    async def ask(self, job_id: str, namespace: str, resource: str) -> pb.StepAnswer:
        self._step += 1
        step = pb.StepRequest(job_id=job_id, step_id=self._step)
        step.authorize.namespace = namespace
        step.authorize.resource = resource
        self.send(pb.WorkRequest(step=step))
        answer = (await self.recv("answer")).answer
        assert answer.step_id == self._step
        return answer

    async def close(self) -> None:
        self._out.put_nowait(None)
        self._call.cancel()
        await self._channel.close()
