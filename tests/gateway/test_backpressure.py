"""A client that sends faster than the core handles is held back at its socket.

The gateway hands the core one frame at a time and reads the next from the socket
only once the core has taken it, so a flood waits in TCP buffers (bounded by the
kernel) instead of piling up in the gateway's memory. Nothing is lost: once the
core catches up every frame is answered, in order (§6.1 frames on a session are
handled in the order sent).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arcp_grpc._ids import new_ulid
from arcp_grpc.credentials import CredentialRequest, DevProvisioner
from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.v1 import lease_pb2
from gateway.links import LocalLink
from gateway.server import GatewayConfig, RunningGateway, start_gateway
from tests.gateway.conftest import SAFETY, TOKENS, RawClient, open_raw

FRAME_INPUT_BYTES = 256 * 1024
FLOOD_FRAMES = 512  # 128 MiB in all: far beyond every socket and stream buffer on the path
STALL_SECONDS = 1.0  # no frame taken for this long counts as held back


class SlowUpstreamProvisioner(DevProvisioner):
    """A provisioner whose upstream answers only when `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def issue(self, request: CredentialRequest) -> list[lease_pb2.Credential]:
        self.asked.set()
        await self.answer.wait()
        return await super().issue(request)


@pytest.fixture(params=["grpc", "local"])
async def slow_stack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RunningCore, RunningGateway, SlowUpstreamProvisioner]]:
    provisioner = SlowUpstreamProvisioner()
    core = await start_core(
        CoreConfig(data_dir=tmp_path / "core", tokens=TOKENS), provisioner=provisioner
    )
    gateway = await start_gateway(
        GatewayConfig(core_address=core.grpc_address, port=0),
        link=LocalLink(core.session_service) if request.param == "local" else None,
    )
    try:
        yield core, gateway, provisioner
    finally:
        provisioner.answer.set()
        await gateway.stop()
        await core.stop(grace=0.5)


def _big_submit(client: RawClient) -> tuple[str, str]:
    """A valid submit the core refuses cheaply (no such agent): nothing is stored."""
    frame_id = new_ulid()
    envelope = client.envelope(
        "job.submit",
        {"agent": "no-such-agent", "input": {"blob": "x" * FRAME_INPUT_BYTES}},
        session_id=client.session_id,
    )
    envelope["id"] = frame_id
    return frame_id, json.dumps(envelope)


async def test_a_flood_waits_in_the_socket_while_the_core_is_busy_and_all_of_it_is_answered(
    slow_stack: tuple[RunningCore, RunningGateway, SlowUpstreamProvisioner],
) -> None:
    _, gateway, provisioner = slow_stack
    client = await open_raw(gateway.url)
    try:
        assert (await client.hello("tok-alice"))["type"] == "session.welcome"
        # The core is busy with this submit until the provisioner's upstream answers.
        held = await client.send(
            "job.submit",
            {"agent": "echo", "input": {}, "lease_request": {"model.use": ["tier-fast/*"]}},
            session_id=client.session_id,
        )
        await asyncio.wait_for(provisioner.asked.wait(), SAFETY)

        frames = [_big_submit(client) for _ in range(FLOOD_FRAMES)]
        taken = 0

        async def flood() -> None:
            nonlocal taken
            for _, text in frames:
                await client.ws.send(text)
                taken += 1

        sender = asyncio.create_task(flood())
        while True:
            before = taken
            done, _ = await asyncio.wait((sender,), timeout=STALL_SECONDS)
            if done or taken == before:
                break
        assert not sender.done(), "the gateway took all 128 MiB while the core was busy"
        assert taken < FLOOD_FRAMES

        provisioner.answer.set()
        await asyncio.wait_for(sender, SAFETY)
        accepted = await client.reply_to(held)
        assert accepted["type"] == "job.accepted"
        refused = []
        for _ in frames:
            reply, _ = await client.recv_until(lambda f: f["type"] == "session.error")
            assert reply["payload"]["code"] == "AGENT_NOT_AVAILABLE", reply
            refused.append(reply["payload"]["request_id"])
        assert refused == [frame_id for frame_id, _ in frames]  # every one, in order
    finally:
        await client.close()
