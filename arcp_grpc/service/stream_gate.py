"""What a JobService stream may send while this node's lease lapsed or after it ended.

A WatchJob or RunJob stream of a node in a cluster sends a message only while the
node holds its lease (`arcp_grpc.runtime.NodeLease`): after a pause it waits for the
next heartbeat, and once the cluster declared the node dead the stream ends with
`NodeUnavailable` (gRPC UNAVAILABLE) at once, even while it was waiting for the job's
next event, so its client learns it and watches through another node (issue 20).
A single node's streams pass straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from arcp_grpc.errors import NodeUnavailable
from arcp_grpc.runtime import NodeLease

__all__ = ["gated"]

T = TypeVar("T")


async def gated(lease: NodeLease, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """`items`, each once the lease holds; `NodeUnavailable` once the node is fenced."""
    if not lease.bounded:
        async for item in items:
            yield item
        return
    fenced = asyncio.ensure_future(lease.until_fenced())
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            await asyncio.wait((step, fenced), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                raise _fenced()
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            if not lease.ready() and not await lease.wait():
                raise _fenced()
            yield item
    finally:
        fenced.cancel()


def _fenced() -> NodeUnavailable:
    return NodeUnavailable(
        "this node was declared dead by the cluster; watch the job through another node"
    )
