"""ARCP sessions through the gateway: only negotiated features reach a client (§6.2).

Progress events, provisioned credentials and budgets (§9.8), result chunks
versus inline results and the inline cap, and the refusal of frames whose
feature was not negotiated.
"""

from __future__ import annotations

from typing import Any

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.service.sessions import SessionLimits
from tests.conftest import SPENDING
from tests.gateway.conftest import ALL_FEATURES, RawFactory, StackFactory, open_raw, seqs


def report_body(size: int) -> str:
    """What the demo `report` agent streams for `{"bytes": size}`."""
    line = ("arcp report line " * 4)[:63] + "\n"
    return (line * (size // len(line) + 1))[:size]


# -- negotiated features only (§6.2) --------------------------------------------


async def test_no_progress_events_without_the_progress_feature(raw: RawFactory) -> None:
    client = await raw(features=[f for f in ALL_FEATURES if f != "progress"])
    assert "progress" not in client.received[0]["payload"]["capabilities"]["features"]
    frames = await client.run("counter", {"steps": 5, "interval": 0.001})
    kinds = [f["payload"]["kind"] for f in frames if f["type"] == "job.event"]
    assert kinds == ["log"]
    assert seqs(frames) == [1, 2]  # filtered events take no sequence number


async def _rotating(ctx: JobContext, _input: Any) -> Any:
    """Rotates its credential (§9.8.2) and logs a line that merely mentions it."""
    await ctx.log("about to emit credential_rotated")
    await ctx.rotate_credential(ctx.credentials[0].id)
    return "rotated"


async def test_credentials_reach_only_clients_that_negotiated_them(
    make_stack: StackFactory,
) -> None:
    """§6.2, §9.8: accepted, listings and credential_rotated events carry credentials
    only for a client with `provisioned_credentials`; budgets need `cost.budget`."""
    agents = AgentRegistry()
    agents.register("rotating", "1.0.0", _rotating)
    stack = await make_stack(agents=agents)
    lease = {**SPENDING, "cost.budget": ["USD:1.00"]}
    without = [f for f in ALL_FEATURES if f not in ("provisioned_credentials", "cost.budget")]
    plain = await open_raw(stack.url)
    await plain.hello(features=without)
    frames = await plain.run("rotating", None, lease_request=lease)
    accepted = frames[0]["payload"]
    assert "credentials" not in accepted
    assert "budget" not in accepted
    events = [f["payload"] for f in frames if f["type"] == "job.event"]
    assert [e["kind"] for e in events] == ["log"]  # the rotation is not shown
    full = await open_raw(stack.url)
    await full.hello()
    frames = await full.run("rotating", None, lease_request=lease)
    assert frames[0]["payload"]["credentials"]
    assert frames[0]["payload"]["budget"]
    phases = [f["payload"]["body"].get("phase") for f in frames if f["type"] == "job.event"]
    assert "credential_rotated" in phases
    await plain.close()
    await full.close()


async def test_result_inline_without_result_chunk(raw: RawFactory) -> None:
    client = await raw(features=[f for f in ALL_FEATURES if f != "result_chunk"])
    frames = await client.run("report", {"bytes": 3000})
    assert not [f for f in frames if f.get("payload", {}).get("kind") == "result_chunk"]
    assert frames[-1]["type"] == "job.result"
    assert frames[-1]["payload"]["result"] == report_body(3000)


async def test_result_chunks_with_result_chunk(raw: RawFactory) -> None:
    client = await raw()
    frames = await client.run("report", {"bytes": 3000})
    chunks = [
        f["payload"]["body"] for f in frames if f.get("payload", {}).get("kind") == "result_chunk"
    ]
    assert chunks
    assert "".join(c["data"] for c in chunks) == report_body(3000)
    assert frames[-1]["payload"]["result_size"] == 3000


async def test_result_above_the_inline_cap_fails_clearly(make_stack: StackFactory) -> None:
    stack = await make_stack(session_limits=SessionLimits(max_inline_result_bytes=1000))
    client = await open_raw(stack.url)
    try:
        await client.hello(features=[f for f in ALL_FEATURES if f != "result_chunk"])
        frames = await client.run("report", {"bytes": 5000})
        terminal = frames[-1]
        assert terminal["type"] == "job.error"
        assert terminal["payload"]["code"] == "INTERNAL_ERROR"
        assert "result_chunk" in terminal["payload"]["message"]
        small = await client.run("report", {"bytes": 900})
        assert small[-1]["payload"]["result"] == report_body(900)
    finally:
        await client.close()


async def test_feature_not_negotiated_is_refused(raw: RawFactory) -> None:
    client = await raw(features=["heartbeat"])
    assert client.received[0]["payload"]["capabilities"]["features"] == ["heartbeat"]
    request_id = await client.send("job.subscribe", {"job_id": "job_x"})
    assert (await client.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"
    request_id = await client.send("session.ack", {"last_processed_seq": 1})
    assert (await client.reply_to(request_id))["payload"]["code"] == "INVALID_REQUEST"
