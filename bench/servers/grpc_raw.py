"""Launch the raw gRPC ceiling: a grpc.aio server with generic handlers and no runtime logic.

- ``/bench.Raw/Unary`` echoes its request bytes (the unary-call ceiling);
- ``/bench.Raw/Events`` takes ``<count>:<batch>`` and streams ``WatchJobResponse`` messages
  holding ``batch`` log events each, pre-serialized once (the event-stream ceiling);
- ``/bench.Raw/Bytes`` takes ``<total>:<chunk>`` and streams ``WatchJobResponse`` messages
  holding one ``result_chunk`` event of ``chunk`` bytes each (the chunked-result ceiling).

The messages are the project's own ``arcp.v1`` types, so the client-side decode cost is the
one a real JobService watcher pays.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from arcp_grpc.process import event_loop
from arcp_grpc.v1 import events_pb2, job_service_pb2
from bench.servers._common import launcher_args, wait_for_stop, write_ready

__all__ = ["SERVICE", "batch_message", "chunk_messages", "main"]

SERVICE = "bench.Raw"


def batch_message(batch: int, first_seq: int = 1) -> bytes:
    """One serialized ``WatchJobResponse`` with ``batch`` log events like the chatty agent's."""
    response = job_service_pb2.WatchJobResponse()
    for seq in range(first_seq, first_seq + batch):
        event = response.events.add(job_id="job_01JBENCHBENCHBENCHBENCHBEN", job_seq=seq)
        event.ts.GetCurrentTime()
        event.log.level = events_pb2.LOG_LEVEL_INFO
        event.log.message = f"event {seq}"
    return response.SerializeToString()


def chunk_messages(chunk: int, distinct: int = 4) -> list[bytes]:
    """A few serialized ``WatchJobResponse`` messages with one random ``result_chunk`` each."""
    out = []
    for seq in range(distinct):
        response = job_service_pb2.WatchJobResponse()
        event = response.events.add(job_id="job_01JBENCHBENCHBENCHBENCHBEN", job_seq=seq + 1)
        event.result_chunk.result_id = "res_01JBENCHBENCHBENCHBENCHBEN"
        event.result_chunk.chunk_seq = seq
        event.result_chunk.data = os.urandom(chunk)
        event.result_chunk.more = True
        out.append(response.SerializeToString())
    return out


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _events(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    count_text, batch_text = request.decode().split(":")
    count, batch = int(count_text), int(batch_text)
    message = batch_message(batch)
    for _ in range(count // batch):
        yield message


async def _bytes(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    total_text, chunk_text = request.decode().split(":")
    total, chunk = int(total_text), int(chunk_text)
    messages = chunk_messages(chunk)
    for i in range(total // chunk):
        yield messages[i % len(messages)]


async def _serve(args: Any) -> None:
    server = grpc.aio.server()
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Events": grpc.unary_stream_rpc_method_handler(_events),
        "Bytes": grpc.unary_stream_rpc_method_handler(_bytes),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    write_ready(args.port_file, {"grpc": f"127.0.0.1:{port}"})
    try:
        await wait_for_stop(args.max_seconds)
    finally:
        await server.stop(grace=None)


def main() -> None:
    """Entry point of ``python -m bench.servers.grpc_raw``."""
    # On the loop our server runs on, so the distance to the ceiling is not the loop's.
    args = launcher_args("raw grpc.aio unary/stream server", event_loop_choice=True).parse_args()
    event_loop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    main()
