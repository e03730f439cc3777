"""`Outbox`, the per-transport frame queue every server frame passes through."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import pytest

from arcp_grpc.service.outbox import Outbox, UnsentLedger


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


async def test_more_than_the_limit_unsent_is_reported_once_and_the_box_can_be_closed() -> None:
    overflows: list[int] = []

    def overflowed(box: Outbox) -> None:
        overflows.append(box.unsent_bytes)
        box.close(b"bye")

    box = Outbox(limit_bytes=10, on_overflow=overflowed)
    box.put_nowait(b"12345")
    box.put_nowait(b"67890")  # exactly at the limit: still fine
    assert overflows == []
    box.put_nowait(b"!")
    assert overflows == [11]
    box.put_nowait(b"dropped")  # after close: nothing more goes in
    assert box.closed
    frames = [box.get_nowait() for _ in range(5)]
    assert frames == [b"12345", b"67890", b"!", b"bye", None]
    assert box.unsent_bytes == 0
    assert box.empty()


async def test_taking_frames_out_makes_room_again() -> None:
    overflows: list[int] = []
    box = Outbox(limit_bytes=4, on_overflow=lambda b: overflows.append(b.unsent_bytes))
    for _ in range(10):
        box.put_nowait(b"abc")
        assert await box.get() == b"abc"
    assert overflows == []
    assert box.unsent_bytes == 0


async def test_close_ends_the_stream_once() -> None:
    box = Outbox()
    box.close()
    box.close(b"late")
    box.put_nowait(b"late too")
    assert box.get_nowait() is None
    assert box.empty()


async def test_a_replay_raises_the_limit_by_its_own_size() -> None:
    overflows: list[int] = []
    box = Outbox(limit_bytes=4, on_overflow=lambda b: overflows.append(b.unsent_bytes))
    box.put_replay([b"buffered", b"frames"])  # 14 bytes the session buffer holds anyway
    box.put_nowait(b"live")
    assert overflows == []
    box.put_nowait(b"!")
    assert overflows == [19]


async def test_close_lets_go_of_the_overflow_callback() -> None:
    """The callback usually belongs to the box's owner: holding it after the stream
    ended would make a reference cycle that only the cyclic collector frees, and each
    ended connection's session buffer with it."""

    class Owner:
        def __init__(self) -> None:
            self.box = Outbox(limit_bytes=1, on_overflow=self.overflowed)

        def overflowed(self, box: Outbox) -> None:
            box.close()

    owner = Owner()
    gone = weakref.ref(owner)
    owner.box.close()
    gc.disable()
    try:
        del owner
        assert gone() is None  # freed by reference counting alone
    finally:
        gc.enable()


async def test_one_frame_larger_than_the_limit_still_fits() -> None:
    overflows: list[int] = []
    box = Outbox(limit_bytes=4, on_overflow=lambda b: overflows.append(b.unsent_bytes))
    box.put_nowait(b"a frame of many bytes")
    assert overflows == []
    box.put_nowait(b"x")
    assert overflows == [22]


async def test_a_shared_ledger_cuts_the_boxes_holding_more_than_their_share() -> None:
    """§14: clients that do not read cannot add up past the node's cap (`UnsentLedger`);
    the one holding more than its share goes, the one that keeps up stays."""
    ledger = UnsentLedger(limit=100)
    cut: list[str] = []

    def cutter(name: str) -> Callable[[Outbox], None]:
        def overflowed(box: Outbox) -> None:
            cut.append(name)
            box.close()

        return overflowed

    hog = Outbox(1_000, cutter("hog"), ledger)
    reader = Outbox(1_000, cutter("reader"), ledger)
    for _ in range(9):
        hog.put_nowait(b"x" * 10)  # 90 bytes: under the node's cap
        reader.put_nowait(b"y" * 10)
        assert reader.get_nowait() == b"y" * 10
    assert cut == []
    hog.put_nowait(b"x" * 20)  # 110 in all, and the hog holds more than 100 / 2
    assert cut == ["hog"]
    reader.put_nowait(b"y" * 10)
    assert cut == ["hog"]
    assert ledger.total == 120  # the hog's frames wait to be drained
    hog.discard()  # its stream ended: what it held no longer counts
    assert (ledger.total, ledger.boxes) == (10, 1)
    hog.discard()
    assert (ledger.total, ledger.boxes) == (10, 1)
