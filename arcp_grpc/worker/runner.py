"""Keep a worker connected: one Work stream at a time, to any of the listed cores.

When a stream ends (the core restarted, the network broke, the core went silent)
the worker connects again, to the next core in the list, after a short backoff
that grows while no core answers; its jobs of the broken stream were ended by the
core and are not re-run. A refused token ends the worker (`WorkerRefused`): no core
will accept it on another try.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

import grpc
from grpc import aio

from arcp_grpc import __version__
from arcp_grpc.agents import AgentRegistry
from arcp_grpc.errors import Unauthenticated
from arcp_grpc.worker.stream import WorkerStream

__all__ = ["WorkerRefused", "run_worker"]

LIBRARY = f"arcp-grpc-python/{__version__}"
_BACKOFF_SEC = (0.1, 0.25, 0.5, 1.0, 2.0)  # between attempts while no core answers

log = logging.getLogger("arcp_grpc.worker")


class WorkerRefused(Unauthenticated):
    """The core refused the worker's token (it is no worker token there)."""


async def run_worker(
    cores: Sequence[str],
    *,
    token: str,
    registry: AgentRegistry,
    slots: int = 4,
    ca: bytes | None = None,
) -> None:
    """Serve `registry`'s agents to the cores at `cores` (HOST:PORT) until cancelled.
    `ca`: PEM roots that verify the cores (TLS); None: plaintext. Raises WorkerRefused
    when a core refuses the token."""
    if not cores:
        raise ValueError("at least one core address is needed")
    failures = 0
    for address in itertools.cycle(cores):
        stream = WorkerStream(registry, slots, LIBRARY)
        channel = (
            aio.secure_channel(address, grpc.ssl_channel_credentials(ca))
            if ca is not None
            else aio.insecure_channel(address)
        )
        try:
            await stream.run(channel, token)
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise WorkerRefused(
                    f"the core at {address} refused the worker token: {error.details()}"
                ) from None
            log.info("worker stream to %s ended: %s", address, error.code().name)
        finally:
            await channel.close()
        failures = 0 if stream.welcome is not None else failures + 1
        await asyncio.sleep(_BACKOFF_SEC[min(failures, len(_BACKOFF_SEC) - 1)])
