"""The job frames of an open ARCP session: submit, cancel, subscribe, list (§7).

Each handler takes the request and the session it came on, and answers on the
session; none needs the connection, so one `SessionJobs` serves every stream.
What follows a job for a session (§7.2 replays, §7.6 subscriptions, a submitter
that fell behind its job) is started here too (`follow`), as a pump task that
reads the store at the client's pace, unless the job's feed delivers directly
(`LiveDelivery`, the common case of a new job).
"""

from __future__ import annotations

import asyncio
import logging

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.runtime import (
    JobRuntime,
    authorize_cancel,
    authorize_session_cancel,
    authorize_subscribe,
    job_query,
)
from arcp_grpc.service.delivery import JobDelivery, LiveDelivery
from arcp_grpc.service.journal import SessionJournal
from arcp_grpc.service.registry import SessionRegistry
from arcp_grpc.service.session_frames import ACCEPTED, with_id
from arcp_grpc.service.sessions import FrameHeader, Session, frame_bytes
from arcp_grpc.v1 import session_service_pb2 as pb

__all__ = ["SessionJobs", "require"]

log = logging.getLogger("arcp_grpc.sessions")


def require(session: Session, feature: str) -> None:
    """§6.2: a frame of a feature the session did not negotiate is refused."""
    if feature not in session.features:
        raise InvalidRequest(f"feature {feature!r} was not negotiated (§6.2)")


class SessionJobs:
    """Handles the job frames of every session of this node."""

    def __init__(
        self, runtime: JobRuntime, sessions: SessionRegistry, journal: SessionJournal | None
    ) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._journal = journal  # a cluster's: what each session follows is recorded

    async def submit(self, request: pb.ConnectRequest, session: Session) -> None:
        name = session.principal.name  # §14: a principal whose sessions hold too much waits
        self._runtime.quotas.check_held_bytes(name, self._sessions.held_bytes(name))
        submission = await self._runtime.submit(
            session.principal, request.submit, request.traceparent
        )
        job_id = submission.job_id
        session.submitted.add(job_id)
        header = FrameHeader(session.session_id, request_id=request.id, job_id=job_id)
        followed = job_id in session.followers
        if submission.replay and not followed:
            await self._replay(session, header, submission.accepted)
            return
        session.send(frame_bytes(header, ACCEPTED, session.shown.accepted(submission.accepted)))
        if followed:
            return
        if self._journal is not None:  # queued ahead of the job's first frame
            self._journal.follow(session, job_id, submitted=True, after=0)
        live = None if submission.replay else self._runtime.live_feed(job_id)
        if live is not None:
            # The common case: a new job, followed from its first event by its feed.
            feed, trace_id = live
            submitter = session.principal.name
            LiveDelivery(
                JobDelivery(session, job_id, trace_id, submitter, request.traceparent),
                feed,
                lambda seq, delivery: self.follow(session, job_id, seq, delivery),
            )
            return
        self.follow(session, job_id, 0)

    async def _replay(self, session: Session, header: FrameHeader, accepted: bytes) -> None:
        """§7.2: the original `job.accepted`, then the job's `credential_rotated` events
        since acceptance, so the caller converges on the live values (DESIGN.md, "Replay
        after a rotation"; a replay is the submitter's principal by construction), then
        the job from now on."""
        job_id = header.job_id
        after = await self._runtime.committed_seq(job_id)
        rotations = await self._runtime.rotations(job_id, after)
        trace_id = await self._runtime.trace_id(job_id)
        # No await from here on: the rotations follow the acceptance at once.
        session.send(frame_bytes(header, ACCEPTED, session.shown.accepted(accepted)))
        if self._journal is not None:  # queued ahead of the rotations' frames
            self._journal.follow(session, job_id, submitted=True, after=after)
        delivery = JobDelivery(session, job_id, trace_id, session.principal.name)
        for seq, blob in rotations:
            delivery.deliver([blob], seq)
        self.follow(session, job_id, after, delivery)

    async def cancel(self, request: pb.ConnectRequest, session: Session) -> None:
        """§7.4: the submitting session only (`access.authorize_session_cancel`)."""
        job_id = request.cancel.job_id
        if job_id not in session.submitted:  # which holds only this session's running jobs
            name = session.principal.name
            authorize_cancel(name, job_id, await self._runtime.owner(job_id))
            _, outcome = await self._runtime.get(session.shown, job_id)
            authorize_session_cancel(job_id, submitted_here=False, ended=outcome is not None)
            # An ended job: the runtime answers as for any cancel that came too late.
        await self._runtime.cancel(session.principal, job_id, request.cancel.reason)
        reply = pb.ConnectResponse(
            session_id=session.session_id, request_id=request.id, job_id=job_id
        )
        reply.cancelled.job_id = job_id
        session.send(with_id(reply))

    async def subscribe(self, request: pb.ConnectRequest, session: Session) -> None:
        """§7.6: the authority descriptor first, then history, then live events."""
        require(session, "subscribe")
        sub = request.subscribe
        owner = await self._runtime.owner(sub.job_id)
        authorize_subscribe(session.principal.name, sub.job_id, owner)  # logged there (§14)
        # The same observable view as `session.list_jobs`, credentials to the submitter only.
        summary, _ = await self._runtime.get(session.shown, sub.job_id)
        current = summary.last_event_seq
        start = min(sub.from_event_seq, current) if sub.history else current
        reply = pb.ConnectResponse(
            session_id=session.session_id,
            request_id=request.id,
            job_id=sub.job_id,
            trace_id=summary.trace_id,
        )
        described = reply.subscribed
        described.job_id = sub.job_id
        described.current_status = summary.status
        described.agent = summary.agent
        described.lease.CopyFrom(summary.lease)
        if summary.HasField("lease_constraints"):
            described.lease_constraints.CopyFrom(summary.lease_constraints)
        described.budget.update(summary.budget)
        described.parent_job_id = summary.parent_job_id
        described.trace_id = summary.trace_id
        described.subscribed_from = start
        described.replayed = current - start
        described.credentials.extend(summary.credentials)
        session.send(with_id(reply))
        if sub.job_id not in session.followers:
            if self._journal is not None:
                self._journal.follow(session, sub.job_id, submitted=False, after=start)
            self.follow(session, sub.job_id, start)

    async def unsubscribe(self, request: pb.ConnectRequest, session: Session) -> None:
        job_id = request.unsubscribe.job_id
        if job_id in session.submitted:
            raise InvalidRequest("a session cannot unsubscribe from a job it submitted")
        if not session.followers.stop(job_id):
            raise InvalidRequest(f"not subscribed to job {job_id!r}", details={"job_id": job_id})
        if self._journal is not None:
            self._journal.unfollow(session, job_id)

    async def list_jobs(self, request: pb.ConnectRequest, session: Session) -> None:
        require(session, "list_jobs")
        listing = request.list_jobs
        query = job_query(session.principal, listing.filter, listing.limit, listing.cursor)
        jobs, cursor = await self._runtime.list_jobs(session.shown, query)
        reply = pb.ConnectResponse(session_id=session.session_id, request_id=request.id)
        reply.jobs.jobs.extend(jobs)
        reply.jobs.next_cursor = cursor
        session.send(with_id(reply))

    # -- event pumps -----------------------------------------------------------------

    def follow(
        self,
        session: Session,
        job_id: str,
        after_seq: int,
        delivery: JobDelivery | None = None,
    ) -> None:
        """Follow `job_id` for `session` after `after_seq` with a pump task (with
        `delivery`, one that was following it: its filters and partial state go on)."""
        task = asyncio.create_task(
            self._pump(session, job_id, after_seq, delivery),
            name=f"pump {session.session_id} {job_id}",
        )
        session.followers.add(job_id, task)
        task.add_done_callback(lambda _t: _forget(session, job_id, task))

    async def _pump(
        self, session: Session, job_id: str, after_seq: int, delivery: JobDelivery | None
    ) -> None:
        """Follow a job from the store and its feed (§7.6 subscriptions, §7.2 replays,
        and a submitter that fell behind its job), at the client's pace."""
        if delivery is None:
            trace_id = await self._runtime.trace_id(job_id)
            submitter = await self._runtime.owner(job_id) or ""  # `watch` refuses a missing job
            delivery = JobDelivery(session, job_id, trace_id, submitter)
        async for batch in self._runtime.watch(session.principal, job_id, after_seq):
            events = batch.events
            first = batch.last_seq - len(events) + 1
            while events:  # a long history goes out as fast as the client takes it
                handled = delivery.deliver(events, first)
                events, first = events[handled:], first + handled
                if events:
                    await session.room()
            if batch.outcome is not None:
                delivery.on_outcome(batch.outcome)


def _forget(session: Session, job_id: str, task: asyncio.Task[None]) -> None:
    session.followers.forget(job_id, task)
    if not task.cancelled() and task.exception() is not None:
        log.error("event pump for job %s failed", job_id, exc_info=task.exception())
