"""Target 2, the transport ceilings: what raw ``websockets`` and raw grpc.aio do here.

No runtime logic runs on either side, so each figure is the most any ARCP runtime on that
transport could reach with Python on this machine. Frames and messages have the sizes the
runtime scenarios use: a submit-sized echo frame, event-sized pushes, 64 KiB chunk frames.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from websockets.asyncio.client import ClientConnection, connect

from arcp_grpc.v1 import job_service_pb2
from bench.loadgen.base import ECHO_INPUT
from bench.loadgen.frames import new_ulid, submit_frame
from bench.scale import Scale

__all__ = [
    "CEILINGS",
    "CEILING_SCENARIOS",
    "EVENT_FRAME_CHARS",
    "Ceiling",
    "ServerCpu",
    "grpc_ceilings",
    "ws_ceilings",
]

Figures = dict[str, float]

#: Size of a reference ``job.event`` log frame (envelope, ids, ts, body) in characters.
EVENT_FRAME_CHARS = 300
#: Application bytes per chunk, as the ``report`` agent sends; 64 KiB once base64-encoded.
CHUNK_APP_BYTES = 48 * 1024
#: Batch size of the batched gRPC stream (issue 7: events batched 32 per message).
GRPC_BATCH = 32

#: Which ceiling measurements back which runtime scenario, for ``--only``.
CEILING_SCENARIOS = {
    "handshake": {"connect"},
    "sequential": {"rtt"},
    "idempotent": {"rtt"},
    "concurrent": {"concurrent", "pipelined"},
    "events": {"events"},
    "chunked": {"chunked"},
    "rss": set(),
    "runjob": {"rtt"},
    "streamed": {"concurrent"},
    "client": {"rtt"},
    "workers": {"rtt"},
}

#: Reads the raw server's CPU seconds so far; per-call CPU shows what the transport alone costs.
ServerCpu = Callable[[], float]


def _echo_frame() -> str:
    return submit_frame(new_ulid(), "sess_" + new_ulid(), "echo", ECHO_INPUT)


async def _ws_rtt_loop(ws: ClientConnection, frame: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await ws.send(frame)
        await ws.recv()
        latencies.append(time.perf_counter() - start)
    return latencies


async def _ws_push(ws: ClientConnection, count: int, size: int) -> float:
    start = time.perf_counter()
    await ws.send(f"push:{count}:{size}")
    received = 0
    for _ in range(count + 1):
        if await ws.recv() == "end":
            break
        received += 1
    elapsed = time.perf_counter() - start
    if received != count:
        raise RuntimeError(f"ws push delivered {received} of {count} frames")
    return elapsed


async def ws_ceilings(url: str, scale: Scale, parts: set[str], cpu: ServerCpu) -> Figures:
    """WebSocket ceilings against ``bench.servers.ws_raw`` (library defaults, as the runtimes)."""
    figures: Figures = {}
    frame = _echo_frame()
    if "connect" in parts:
        latencies = []
        for _ in range(scale.handshakes):
            start = time.perf_counter()
            ws = await connect(url, max_size=None)
            latencies.append(time.perf_counter() - start)
            await ws.close()
        figures["ws_connect_ms"] = statistics.median(latencies) * 1e3
    async with connect(url, max_size=None) as ws:
        if "rtt" in parts:
            await _ws_rtt_loop(ws, frame, 50)
            since = cpu()
            start = time.perf_counter()
            latencies = await _ws_rtt_loop(ws, frame, scale.sequential_jobs)
            figures["ws_rtt_per_s"] = scale.sequential_jobs / (time.perf_counter() - start)
            figures["ws_rtt_ms"] = statistics.median(latencies) * 1e3
            figures["ws_rtt_cpu_us"] = (cpu() - since) / scale.sequential_jobs * 1e6
        if "pipelined" in parts:
            count = scale.sessions * scale.jobs_per_session
            start = time.perf_counter()

            async def sender() -> None:
                for _ in range(count):
                    await ws.send(frame)

            send_task = asyncio.create_task(sender())
            for _ in range(count):
                await ws.recv()
            await send_task
            figures["ws_pipelined_msgs_per_s"] = count / (time.perf_counter() - start)
        if "events" in parts:
            await _ws_push(ws, 100, EVENT_FRAME_CHARS)
            elapsed = await _ws_push(ws, scale.events, EVENT_FRAME_CHARS)
            figures["ws_push_msgs_per_s"] = scale.events / elapsed
        if "chunked" in parts:
            frames = scale.chunk_bytes // CHUNK_APP_BYTES
            await _ws_push(ws, 2, 64 * 1024)
            elapsed = await _ws_push(ws, frames, 64 * 1024)
            figures["ws_push_mb_per_s"] = frames * CHUNK_APP_BYTES / 2**20 / elapsed
    if parts & {"events", "chunked"}:
        # The same pushes with permessage-deflate off, for a runtime that does not compress.
        async with connect(url, max_size=None, compression=None) as ws:
            if "events" in parts:
                elapsed = await _ws_push(ws, scale.events, EVENT_FRAME_CHARS)
                figures["ws_push_msgs_per_s_nodeflate"] = scale.events / elapsed
            if "chunked" in parts:
                frames = scale.chunk_bytes // CHUNK_APP_BYTES
                elapsed = await _ws_push(ws, frames, 64 * 1024)
                figures["ws_push_mb_per_s_nodeflate"] = frames * CHUNK_APP_BYTES / 2**20 / elapsed
    if "concurrent" in parts:
        conns = [await connect(url, max_size=None) for _ in range(scale.sessions)]
        try:
            await asyncio.gather(*(_ws_rtt_loop(ws, frame, 5) for ws in conns))
            since = cpu()
            start = time.perf_counter()
            await asyncio.gather(*(_ws_rtt_loop(ws, frame, scale.jobs_per_session) for ws in conns))
            elapsed = time.perf_counter() - start
            used = cpu() - since
        finally:
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        round_trips = scale.sessions * scale.jobs_per_session
        figures["ws_rtt_conc_per_s"] = round_trips / elapsed
        figures["ws_rtt_conc_cpu_us"] = used / round_trips * 1e6
    return figures


async def _unary_loop(channel: grpc.aio.Channel, payload: bytes, count: int) -> list[float]:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/bench.Raw/Unary")
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await call(payload)
        latencies.append(time.perf_counter() - start)
    return latencies


async def _stream_count(channel: grpc.aio.Channel, method: str, request: str) -> tuple[int, int]:
    """Read a raw stream to its end; return (events, result-chunk bytes) decoded from it."""
    call: grpc.aio.UnaryStreamMultiCallable[bytes, job_service_pb2.WatchJobResponse] = (
        channel.unary_stream(
            method, response_deserializer=job_service_pb2.WatchJobResponse.FromString
        )
    )
    events = chunk_bytes = 0
    async for message in call(request.encode()):
        for event in message.events:
            if event.WhichOneof("body") == "result_chunk":
                chunk_bytes += len(event.result_chunk.data)
            else:
                events += 1
    return events, chunk_bytes


async def grpc_ceilings(address: str, scale: Scale, parts: set[str], cpu: ServerCpu) -> Figures:
    """grpc.aio ceilings against ``bench.servers.grpc_raw``."""
    figures: Figures = {}
    payload = _echo_frame().encode()
    if "connect" in parts:
        latencies = []
        for _ in range(scale.handshakes):
            start = time.perf_counter()
            async with grpc.aio.insecure_channel(address) as channel:
                await _unary_loop(channel, payload, 1)
                latencies.append(time.perf_counter() - start)
        figures["grpc_connect_ms"] = statistics.median(latencies) * 1e3
    async with grpc.aio.insecure_channel(address) as channel:
        if "rtt" in parts:
            await _unary_loop(channel, payload, 50)
            since = cpu()
            start = time.perf_counter()
            latencies = await _unary_loop(channel, payload, scale.sequential_jobs)
            figures["grpc_unary_per_s"] = scale.sequential_jobs / (time.perf_counter() - start)
            figures["grpc_unary_ms"] = statistics.median(latencies) * 1e3
            figures["grpc_unary_cpu_us"] = (cpu() - since) / scale.sequential_jobs * 1e6
            # RunJob's floor: one call whose stream carries two messages (acceptance, outcome).
            streams = []
            for _ in range(scale.sequential_jobs):
                start = time.perf_counter()
                await _stream_count(channel, "/bench.Raw/Events", "2:1")
                streams.append(time.perf_counter() - start)
            figures["grpc_stream2_ms"] = statistics.median(streams) * 1e3
        if "events" in parts:
            await _stream_count(channel, "/bench.Raw/Events", "100:1")
            start = time.perf_counter()
            got, _ = await _stream_count(channel, "/bench.Raw/Events", f"{scale.events}:1")
            figures["grpc_stream_msgs_per_s"] = got / (time.perf_counter() - start)
            batched = scale.events * 5
            start = time.perf_counter()
            got, _ = await _stream_count(channel, "/bench.Raw/Events", f"{batched}:{GRPC_BATCH}")
            figures["grpc_stream_batched_events_per_s"] = got / (time.perf_counter() - start)
        if "chunked" in parts:
            request = f"{scale.chunk_bytes}:{CHUNK_APP_BYTES}"
            start = time.perf_counter()
            _, got = await _stream_count(channel, "/bench.Raw/Bytes", request)
            figures["grpc_stream_mb_per_s"] = got / 2**20 / (time.perf_counter() - start)
    if "concurrent" in parts:
        channels = [grpc.aio.insecure_channel(address) for _ in range(scale.sessions)]
        try:
            await asyncio.gather(*(_unary_loop(ch, payload, 5) for ch in channels))
            since = cpu()
            start = time.perf_counter()
            await asyncio.gather(
                *(_unary_loop(ch, payload, scale.jobs_per_session) for ch in channels)
            )
            elapsed = time.perf_counter() - start
            used = cpu() - since
        finally:
            await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        calls = scale.sessions * scale.jobs_per_session
        figures["grpc_unary_conc_per_s"] = calls / elapsed
        figures["grpc_unary_conc_cpu_us"] = used / calls * 1e6
    return figures


@dataclass(frozen=True)
class Ceiling:
    """A raw server and the measurements taken against it."""

    key: str
    label: str
    server_module: str
    measure: Callable[[dict[str, Any], Scale, set[str], ServerCpu], Awaitable[Figures]]


def _measure_ws(
    info: dict[str, Any], scale: Scale, parts: set[str], cpu: ServerCpu
) -> Awaitable[Figures]:
    return ws_ceilings(info["url"], scale, parts, cpu)


def _measure_grpc(
    info: dict[str, Any], scale: Scale, parts: set[str], cpu: ServerCpu
) -> Awaitable[Figures]:
    return grpc_ceilings(info["grpc"], scale, parts, cpu)


CEILINGS = (
    Ceiling("ws-raw", "raw websockets", "bench.servers.ws_raw", _measure_ws),
    Ceiling("grpc-raw", "raw grpc.aio", "bench.servers.grpc_raw", _measure_grpc),
)
