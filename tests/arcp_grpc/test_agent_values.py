"""What an agent's input looks like and what it may return (§7.1, §8.4).

The runtime converts `google.protobuf.Value` to Python data and back by hand
(`arcp_grpc.base.json_values`); these tests pin the meaning agents rely on: integral
numbers arrive as `int`, a result must be JSON data, and a result that is not
(NaN, an arbitrary object) ends the job with INTERNAL_ERROR naming where.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Any

import grpc
import pytest

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.context import JobContext
from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import jobs_pb2
from tests.conftest import CoreFactory, bearer, error_code, new_stub, submit_request, watch_all


class Colour(enum.IntEnum):
    RED = 1


_RESULTS: dict[str, Any] = {
    "nan": {"score": math.nan},
    "infinity": [1, math.inf],
    "object": {"when": object()},
    "tuple": {"tags": ("not", "a", "list")},
    "subclasses": OrderedDict(colour=Colour.RED, tags=["a"]),
}


def _registry(seen: list[Any]) -> AgentRegistry:
    registry = AgentRegistry()

    @registry.agent("record")
    async def record(ctx: JobContext, input_value: Any) -> Any:
        seen.append(input_value)
        return input_value

    @registry.agent("returns")
    async def returns(ctx: JobContext, input_value: Any) -> Any:
        return _RESULTS[input_value["case"]]

    return registry


async def _outcome(core: RunningCore, agent: str, input_value: Any) -> jobs_pb2.JobOutcome:
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = new_stub(channel)
        reply = await stub.SubmitJob(submit_request(agent, input_value), metadata=bearer())
        watched = await watch_all(stub, reply.accepted.job_id)
    assert watched.outcome is not None
    return watched.outcome


async def test_input_arrives_as_plain_json_data(make_core: CoreFactory) -> None:
    """Integral doubles within ±2^53 are ints (as the gateway renders them); others stay
    floats; nesting, strings, booleans and null come through unchanged."""
    seen: list[Any] = []
    core = await make_core(agents=_registry(seen))
    sent = {"n": 3, "ratio": 0.25, "big": 2.0**60, "nested": {"b": [True, None, "x"], "a": -1}}
    outcome = await _outcome(core, "record", sent)
    (received,) = seen
    assert received == sent
    assert type(received["n"]) is int
    assert type(received["nested"]["a"]) is int
    assert type(received["ratio"]) is float
    assert type(received["big"]) is float  # beyond 2^53: an int would claim false precision
    assert list(received["nested"]) == ["a", "b"]  # keys sorted: map order is not stable
    assert outcome.result.value.struct_value.fields["n"].number_value == 3


@pytest.mark.parametrize("case", ["nan", "infinity", "object", "tuple"])
async def test_a_result_that_is_not_json_ends_the_job_with_internal_error(
    make_core: CoreFactory, case: str
) -> None:
    core = await make_core(agents=_registry([]))
    outcome = await _outcome(core, "returns", {"case": case})
    assert outcome.WhichOneof("outcome") == "error"
    assert error_code(outcome.error) == "INTERNAL_ERROR"
    assert outcome.error.final_status == jobs_pb2.JOB_STATUS_ERROR
    assert "not JSON" in outcome.error.error.message
    assert "result" in outcome.error.error.message  # names where, e.g. result.score


async def test_subclasses_of_json_types_are_returned_as_their_base_types(
    make_core: CoreFactory,
) -> None:
    """An IntEnum is a number, an OrderedDict an object (a tuple is not JSON: above)."""
    core = await make_core(agents=_registry([]))
    outcome = await _outcome(core, "returns", {"case": "subclasses"})
    assert outcome.WhichOneof("outcome") == "result"
    fields = outcome.result.value.struct_value.fields
    assert fields["colour"].number_value == 1
    assert [v.string_value for v in fields["tags"].list_value.values] == ["a"]
