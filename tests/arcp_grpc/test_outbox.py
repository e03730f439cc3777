"""`Outbox`, the per-transport frame queue every server frame passes through."""

from __future__ import annotations

import asyncio

import pytest

from arcp_grpc._sessions import Outbox


async def test_frames_come_out_in_order_and_none_ends() -> None:
    box = Outbox()
    for frame in (b"a", b"b", None):
        box.put_nowait(frame)
    assert [await box.get(), box.get_nowait(), box.get_nowait()] == [b"a", b"b", None]
    assert box.empty()
    with pytest.raises(asyncio.QueueEmpty):
        box.get_nowait()


async def test_a_waiting_consumer_wakes_on_put() -> None:
    box = Outbox()
    getter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not getter.done()
    box.put_nowait(b"x")
    assert await asyncio.wait_for(getter, 1.0) == b"x"


async def test_a_cancelled_wait_leaves_the_queue_usable() -> None:
    box = Outbox()
    getter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    box.put_nowait(b"y")  # no stale waiter to trip over
    assert await asyncio.wait_for(box.get(), 1.0) == b"y"
