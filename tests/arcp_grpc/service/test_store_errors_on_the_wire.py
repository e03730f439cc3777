"""The store's errors as a client sees them, through gRPC and through the WebSocket, on
a real core over real PostgreSQL (issue 20): a value the database refuses is the
request's error in the store's words, and a read the database fails is INTERNAL; the
driver's text is in the node's log, never on the wire (§12)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest

from arcp_grpc.server import CoreConfig, RunningCore, start_core
from arcp_grpc.v1 import job_service_pb2
from gateway.server import GatewayConfig, RunningGateway, start_gateway
from tests.conftest import (
    DRIVER_NUL,
    SAFETY,
    TOKENS,
    arcp_error,
    bearer,
    new_stub,
    postgres_schema,
    submit_request,
)
from tests.gateway.conftest import open_raw

NUL_KEY = "bad\x00key"  # PostgreSQL text cannot hold NUL; the idempotency key reaches it
REFUSED = "the store refused a value: a text holds a character it cannot keep (NUL)"
# What PostgreSQL says of a table that is not there, and of the NUL: never on the wire.
DRIVER_WORDS = ("0x00", "UTF8", "relation", "does not exist")


@dataclass
class Node:
    core: RunningCore
    gateway: RunningGateway
    store_url: str


@pytest.fixture
async def node(tmp_path: Path, postgres_server: str) -> AsyncIterator[Node]:
    async with postgres_schema(postgres_server) as url:
        config = CoreConfig(data_dir=tmp_path / "data", tokens=TOKENS, store_url=url)
        core = await start_core(config)
        try:
            gateway = await start_gateway(GatewayConfig(core_address=core.grpc_address, port=0))
            try:
                yield Node(core, gateway, url)
            finally:
                await gateway.stop()
        finally:
            await core.stop(grace=0.5)


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def _no_driver_text(wire: str) -> None:
    for words in DRIVER_WORDS:
        assert words not in wire, f"the driver's {words!r} reached the client: {wire}"


async def test_a_value_the_database_refuses_is_invalid_argument_over_grpc(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="arcp_grpc"):
        async with grpc.aio.insecure_channel(node.core.grpc_address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await new_stub(channel).SubmitJob(
                    submit_request("echo", {"x": 1}, key=NUL_KEY), metadata=bearer(), timeout=SAFETY
                )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = arcp_error(refused.value)
    assert (error.code, error.message) == ("INVALID_REQUEST", REFUSED)
    _no_driver_text(f"{refused.value.details()} {refused.value.trailing_metadata()!r}")
    assert len(_logged(caplog, DRIVER_NUL)) == 1  # said once, where the store refused it


async def test_a_value_the_database_refuses_is_invalid_request_over_the_websocket(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    client = await open_raw(node.gateway.url)
    try:
        assert (await client.hello())["type"] == "session.welcome"
        with caplog.at_level(logging.INFO, logger="arcp_grpc"):
            reply = await client.submit("echo", {"x": 1}, idempotency_key=NUL_KEY)
        assert reply["type"] == "session.error", reply
        assert (reply["payload"]["code"], reply["payload"]["message"]) == (
            "INVALID_REQUEST",
            REFUSED,
        )
        _no_driver_text(json.dumps(reply))
        assert len(_logged(caplog, DRIVER_NUL)) == 1
        # The session carries on: the next submit is accepted.
        assert (await client.submit("echo", {"x": 2}))["type"] == "job.accepted"
    finally:
        await client.close()


async def test_a_read_the_database_fails_is_internal_in_the_stores_words(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver error that is neither a lost connection nor the request's own data: the
    store failed. The client reads the store's words, the log holds the driver's once,
    as one line (no traceback: it is not a bug of this node)."""
    admin = await asyncpg.connect(node.store_url)
    try:
        await admin.execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
        with caplog.at_level(logging.INFO, logger="arcp_grpc"):
            async with grpc.aio.insecure_channel(node.core.grpc_address) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await new_stub(channel).ListJobs(
                        job_service_pb2.ListJobsRequest(), metadata=bearer(), timeout=SAFETY
                    )
    finally:
        await admin.execute("ALTER TABLE jobs_elsewhere RENAME TO jobs")
        await admin.close()
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    error = arcp_error(failed.value)
    assert (error.code, error.message) == ("INTERNAL_ERROR", "the store failed")
    _no_driver_text(f"{failed.value.details()} {failed.value.trailing_metadata()!r}")
    (said,) = _logged(caplog, 'relation "jobs" does not exist')
    assert said.exc_info is None
