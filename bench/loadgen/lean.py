"""The lean generator: raw ``websockets`` frames, pre-built JSON, one parse per frame.

It exists because the published client spends about as much CPU per job as the reference
server (pydantic models on every envelope); on a 2-core machine that hides a faster server.
Here the submit frames are built before the clock starts and each inbound frame is parsed
once with ``json.loads``; nothing else is done per frame.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.loadgen.base import ECHO_INPUT, ProtocolViolation
from bench.loadgen.frames import bye_frame, hello_frame, new_ulid, submit_frame

__all__ = ["LeanConn", "LeanDriver"]

#: Upper bound on frames read while waiting for one reply, so a confused server cannot
#: keep a loop spinning forever (time is bounded separately by the scenario timeout).
_MAX_FRAMES_PER_WAIT = 50_000_000


def _b64_len(data: str) -> int:
    """Decoded length of base64 text, without decoding it."""
    return len(data) * 3 // 4 - data.endswith("=") - data.endswith("==")


class LeanConn:
    """One ARCP session over a raw WebSocket; jobs run one at a time."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self._ws = ws
        self._session_id = session_id
        self._echo_input = ECHO_INPUT

    async def _recv(self) -> dict[str, Any]:
        message = await self._ws.recv()
        envelope: dict[str, Any] = json.loads(message)
        if envelope.get("type") == "session.error":
            raise ProtocolViolation(f"session.error: {envelope.get('payload')}")
        return envelope

    async def _submit(self, frame_id: str, frame: str) -> str:
        await self._ws.send(frame)
        for _ in range(_MAX_FRAMES_PER_WAIT):
            envelope = await self._recv()
            if envelope.get("type") != "job.accepted":
                continue
            payload = envelope.get("payload") or {}
            # The spec does not require `request_id` on job.accepted; without it, as the
            # reference client does, the oldest pending submit wins, and here only one is.
            request_id = payload.get("request_id")
            if request_id is None or request_id == frame_id:
                return str(payload["job_id"])
        raise ProtocolViolation("no job.accepted for the submit")

    async def _result(self, job_id: str) -> tuple[int, int]:
        """Read until ``job_id`` ends; count its ``log`` events and decoded result-chunk bytes.

        Only ``log`` events count: a runtime may add ``status`` or other events of its own.
        """
        events = chunk_bytes = 0
        for _ in range(_MAX_FRAMES_PER_WAIT):
            envelope = await self._recv()
            if envelope.get("job_id") != job_id:
                continue
            kind = envelope.get("type")
            if kind == "job.event":
                payload = envelope["payload"]
                kind_of_event = payload.get("kind")
                if kind_of_event == "result_chunk":
                    body = payload["body"]
                    data = body.get("data", "")
                    chunk_bytes += _b64_len(data) if body.get("encoding") == "base64" else len(data)
                elif kind_of_event == "log":
                    events += 1
            elif kind == "job.result":
                return events, chunk_bytes
            elif kind == "job.error":
                raise ProtocolViolation(f"job.error: {envelope.get('payload')}")
        raise ProtocolViolation("no terminal for the job")

    def _frame(self, agent: str, agent_input: Any, key: str | None = None) -> tuple[str, str]:
        frame_id = new_ulid()
        return frame_id, submit_frame(frame_id, self._session_id, agent, agent_input, key)

    async def run_echo(self) -> tuple[float, float]:
        frame_id, frame = self._frame("echo", self._echo_input)
        start = time.perf_counter()
        job_id = await self._submit(frame_id, frame)
        accepted = time.perf_counter()
        await self._result(job_id)
        return accepted - start, time.perf_counter() - start

    async def submit_keyed(self, key: str, *, wait_result: bool) -> float:
        frame_id, frame = self._frame("echo", self._echo_input, key)
        start = time.perf_counter()
        job_id = await self._submit(frame_id, frame)
        elapsed = time.perf_counter() - start
        if wait_result:
            await self._result(job_id)
        return elapsed

    async def run_chatty(self, events: int) -> tuple[float, int]:
        frame_id, frame = self._frame("chatty", {"events": events})
        start = time.perf_counter()
        job_id = await self._submit(frame_id, frame)
        received, _ = await self._result(job_id)
        return time.perf_counter() - start, received

    async def run_report(self, size: int) -> tuple[float, int]:
        frame_id, frame = self._frame("report", {"bytes": size})
        start = time.perf_counter()
        job_id = await self._submit(frame_id, frame)
        _, received = await self._result(job_id)
        return time.perf_counter() - start, received

    async def close(self) -> None:
        try:
            await self._ws.send(bye_frame(new_ulid(), self._session_id))
        finally:
            await self._ws.close()


class LeanDriver:
    """Opens lean sessions: WebSocket upgrade, ``session.hello`` → ``session.welcome``."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token

    async def connect(self) -> LeanConn:
        ws = await connect(self._url, max_size=None)
        try:
            await ws.send(hello_frame(new_ulid(), self._token))
            welcome: dict[str, Any] = json.loads(await ws.recv())
            if welcome.get("type") != "session.welcome":
                raise ProtocolViolation(f"expected session.welcome, got {welcome.get('type')}")
            return LeanConn(ws, str(welcome["payload"]["session_id"]))
        except BaseException:
            await ws.close()
            raise
