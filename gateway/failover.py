"""A gateway in front of several cores of one cluster (`serve gateway --core A,B`).

The cores share the store, so any of them serves any session or job (DESIGN.md,
scale-out). What the gateway does is keep clients off a core that is not answering:

- **Rotation.** New sessions go round-robin over the cores in rotation. A core leaves
  it when a stream on it fails (its keepalive timed out, the connection was refused or
  reset), when it does not answer a new session's opening frame within
  `open_timeout_sec`, or when a health probe does not answer `SERVING`. Every core is
  probed every `probe_sec`; one that left comes back when a probe made at least
  `probe_sec` after its failure answers `SERVING`.
- **Opening.** A new session whose core fails before answering is opened on the next
  core, in rotation first, then those out (longest out first), each tried once: the
  first client after a core's death is served, not dropped. The opening frame (hello or
  resume) is sent again there; the client's later frames wait for the core's first
  answer, so no frame that does work (a submit) can reach a failing core and then be
  sent twice. A hello the failed core did take leaves it an unused session; a resume it
  took is taken over again by the next (a token stays valid until its successor is used).
- **Established.** A session stays on its core. When that core fails, the client's
  socket closes with 1011 (`gateway.bridge`) and the client resumes through the gateway,
  reaching a core in rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass

import grpc

from arcp_grpc.service.transport_policy import Hop
from arcp_grpc.v1.session_service_pb2 import ConnectRequest, ConnectResponse
from gateway.links import CoreLink, CoreStream, Health, StreamEnded

__all__ = ["FailoverLink"]

log = logging.getLogger("gateway.failover")

_SERVING = "SERVING"


@dataclass
class _Core:
    name: str  # its address, as configured
    link: CoreLink
    status: str = _SERVING  # the last probe's answer (assumed until the first probe)
    out_since: float = 0.0  # monotonic time it last failed

    @property
    def in_rotation(self) -> bool:
        return self.status == _SERVING


class FailoverLink:
    """Several cores of one cluster, each behind its own link (see the module docstring
    for the policy). `start` begins the health probes; `close` ends them and the links."""

    def __init__(
        self, links: Mapping[str, CoreLink], *, open_timeout_sec: float, probe_sec: float
    ) -> None:
        if not links:
            raise ValueError("a failover link needs at least one core")
        self._cores = [_Core(name, link) for name, link in links.items()]
        self.open_timeout_sec = open_timeout_sec
        self._probe_sec = probe_sec
        self._next = 0
        self._prober: asyncio.Task[None] | None = None
        self._probed = asyncio.Event()  # the first round of probes is in

    def start(self) -> None:
        self._prober = asyncio.create_task(self._probe_forever(), name="gateway core probes")

    def connect(self, client: Hop | None = None) -> CoreStream:
        return _OpeningStream(self, client)

    def pick(self, tried: Collection[int]) -> int | None:
        """The next core for a new session, None once every core was tried: a core out
        of rotation is still better than refusing the client."""
        count = len(self._cores)
        for step in range(count):
            index = (self._next + step) % count
            if index not in tried and self._cores[index].in_rotation:
                self._next = index + 1
                return index
        rest = [index for index in range(count) if index not in tried]
        return min(rest, key=lambda index: self._cores[index].out_since) if rest else None

    def open(self, index: int, client: Hop | None) -> CoreStream:
        return self._cores[index].link.connect(client)

    def failed(self, index: int, why: str) -> None:
        """A stream on core `index` failed: out of rotation until a probe brings it back."""
        core = self._cores[index]
        if core.in_rotation:
            log.warning("core %s left the rotation: %s", core.name, why)
        core.status = "UNREACHABLE"
        core.out_since = time.monotonic()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(core) for core in self._cores))
            self._probed.set()
            await asyncio.sleep(self._probe_sec)

    async def _probe(self, core: _Core) -> None:
        status = (await core.link.health()).core
        if status == core.status:
            return
        if status == _SERVING:
            if time.monotonic() - core.out_since < self._probe_sec:
                return  # failed moments ago: the next probe decides
            log.warning("core %s is back in the rotation", core.name)
        elif core.in_rotation:
            log.warning("core %s left the rotation: health %s", core.name, status)
            core.out_since = time.monotonic()
        core.status = status

    async def health(self) -> Health:
        """`SERVING` while any core is in rotation, with each core's last probed status
        (at most `probe_sec` old; a stream's failure shows at once)."""
        if self._prober is None:
            raise RuntimeError("the failover link was not started")
        await self._probed.wait()
        cores = {core.name: core.status for core in self._cores}
        serving = any(core.in_rotation for core in self._cores)
        return Health(_SERVING if serving else self._cores[0].status, cores)

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for core in self._cores:
            await core.link.close()


class _OpeningStream:
    """A new session's stream, on the first core that answers its opening frame."""

    def __init__(self, link: FailoverLink, client: Hop | None) -> None:
        self._link = link
        self._client = client
        self._tried: list[int] = []
        self._index = 0
        self._stream: CoreStream
        self._move_on()  # a link has a core: the first is always found
        self._opening: ConnectRequest | None = None
        self._answered = asyncio.Event()  # the core's first frame came, or the stream is over
        self._timer: asyncio.TimerHandle | None = None
        self._overdue = False  # the current core did not answer the opening in time

    def _move_on(self) -> bool:
        """Open the stream on the next core not tried yet; False when none is left."""
        index = self._link.pick(self._tried)
        if index is None:
            return False
        self._tried.append(index)
        self._index = index
        self._stream = self._link.open(index, self._client)
        self._overdue = False
        return True

    def __aiter__(self) -> AsyncIterator[ConnectResponse]:
        return self._read()

    async def _read(self) -> AsyncIterator[ConnectResponse]:
        try:
            while True:
                try:
                    async for response in self._stream:
                        self._answer()
                        yield response
                    if not self._overdue:
                        return
                    failure = self._late()  # a cancelled call may just end
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.CANCELLED and not self._overdue:
                        raise  # cancelled by its owner: the client left
                    failure = self._late() if self._overdue else exc
                self._link.failed(self._index, failure.details() or failure.code().name)
                if self._answered.is_set() or not self._move_on():
                    raise failure
                if self._opening is not None:  # sent to the core that failed: again here
                    await self._send_opening()
        finally:
            self._answer()

    def _late(self) -> grpc.aio.AioRpcError:
        timeout = self._link.open_timeout_sec
        return grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=f"the core did not answer within {timeout:g} s",
        )

    def _answer(self) -> None:
        self._answered.set()
        if self._timer is not None:
            self._timer.cancel()

    async def write(self, request: ConnectRequest) -> None:
        if self._opening is None:
            self._opening = request
            await self._send_opening()
            return
        await self._answered.wait()  # later frames only once a core has answered
        await self._stream.write(request)

    async def _send_opening(self) -> None:
        assert self._opening is not None
        stream = self._stream
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._link.open_timeout_sec, self._give_up, stream)
        with contextlib.suppress(StreamEnded):  # its failure reaches the reader
            await stream.write(self._opening)

    def _give_up(self, stream: CoreStream) -> None:
        if stream is self._stream and not self._answered.is_set():
            self._overdue = True
            stream.cancel()

    def cancel(self) -> bool:
        return self._stream.cancel()
