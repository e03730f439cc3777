"""Feed listeners: the submitting session's follower, fed as events commit (§8.3)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from arcp_grpc.runtime.feed import JobFeed


class Recorder:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.seen: list[bytes] = []
        self.outcome: bytes | None = None
        self.fail_on = fail_on

    def on_events(self, blobs: Sequence[bytes]) -> None:
        for blob in blobs:
            if blob == self.fail_on:
                raise RuntimeError("listener bug")
            self.seen.append(blob)

    def on_outcome(self, outcome: bytes) -> None:
        self.outcome = outcome


async def test_a_listener_sees_every_commit_in_order_then_the_outcome() -> None:
    feed = JobFeed("job_1")
    listener = Recorder()
    feed.listen(listener)
    feed.on_commit([(1, b"a"), (2, b"b")])
    feed.on_commit([(3, b"c")])
    feed.finish(b"done")
    assert listener.seen == [b"a", b"b", b"c"]
    assert listener.outcome == b"done"
    assert feed.committed_seq == 3
    feed.on_commit([(4, b"late")])  # after the outcome nobody is listening any more
    assert listener.seen == [b"a", b"b", b"c"]


async def test_a_failing_listener_is_detached_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = JobFeed("job_2")
    broken, healthy = Recorder(fail_on=b"b"), Recorder()
    feed.listen(broken)
    feed.listen(healthy)
    with caplog.at_level(logging.ERROR, logger="arcp_grpc.runtime"):
        feed.on_commit([(1, b"a"), (2, b"b")])
    feed.on_commit([(3, b"c")])
    feed.finish(b"done")
    assert healthy.seen == [b"a", b"b", b"c"]
    assert healthy.outcome == b"done"
    assert broken.seen == [b"a"]
    assert broken.outcome is None
    assert "job_2" in caplog.text


async def test_an_unlistened_listener_hears_nothing_more() -> None:
    feed = JobFeed("job_3")
    listener = Recorder()
    feed.listen(listener)
    feed.on_commit([(1, b"a")])
    feed.unlisten(listener)
    feed.on_commit([(2, b"b")])
    feed.finish(b"done")
    assert listener.seen == [b"a"]
    assert listener.outcome is None
