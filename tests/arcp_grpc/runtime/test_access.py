"""Who may act on a job or a session (`arcp_grpc.runtime.access`): each action's
answer for the submitter, another principal and a job that does not exist, as the
spec names it (§6.3, §6.6, §7.4, §7.6, §14)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from arcp_grpc.errors import ARCPError, JobNotFound, PermissionDenied, Unauthenticated
from arcp_grpc.runtime.access import (
    authorize_cancel,
    authorize_observe,
    authorize_resume,
    authorize_session_cancel,
    authorize_subscribe,
    is_submitter,
    observes,
)

JobCheck = Callable[[str, str, "str | None"], None]

# (action, caller, owner, expected error or None when allowed)
JOB_ACTIONS: list[tuple[JobCheck, str, str | None, type[ARCPError] | None]] = [
    # §6.6: get, list, watch never tell another principal a job exists.
    (authorize_observe, "alice", "alice", None),
    (authorize_observe, "alice", "bob", JobNotFound),
    (authorize_observe, "alice", None, JobNotFound),
    # §7.6: an unauthorised subscription is PERMISSION_DENIED; no job is still not found.
    (authorize_subscribe, "alice", "alice", None),
    (authorize_subscribe, "alice", "bob", PermissionDenied),
    (authorize_subscribe, "alice", None, JobNotFound),
    # §7.4 without sessions (JobService, the runtime): the submitting principal.
    (authorize_cancel, "alice", "alice", None),
    (authorize_cancel, "alice", "bob", JobNotFound),
    (authorize_cancel, "alice", None, JobNotFound),
]


@pytest.mark.parametrize(("check", "caller", "owner", "error"), JOB_ACTIONS)
def test_job_actions_answer_as_the_spec_says(
    check: JobCheck, caller: str, owner: str | None, error: type[ARCPError] | None
) -> None:
    if error is None:
        check(caller, "job_1", owner)
        return
    with pytest.raises(error) as raised:
        check(caller, "job_1", owner)
    assert raised.value.details == {"job_id": "job_1"}
    assert "bob" not in str(raised.value)  # never names the owner


@pytest.mark.parametrize(
    ("submitted_here", "ended", "error"),
    [
        (True, False, None),  # §7.4: the submitting session (a resumed one too, §7.7)
        (True, True, None),  # the runtime answers "already ended"
        (False, False, PermissionDenied),  # §7.6, §14: a subscriber or another session
        (False, True, None),  # ended: answered as any cancel that came too late
    ],
)
def test_a_session_cancels_only_what_it_submitted(
    submitted_here: bool, ended: bool, error: type[ARCPError] | None
) -> None:
    if error is None:
        authorize_session_cancel("job_1", submitted_here=submitted_here, ended=ended)
        return
    with pytest.raises(error):
        authorize_session_cancel("job_1", submitted_here=submitted_here, ended=ended)


@pytest.mark.parametrize(
    ("caller", "owner", "allowed"), [("alice", "alice", True), ("mallory", "alice", False)]
)
def test_only_its_principal_resumes_a_session(caller: str, owner: str, allowed: bool) -> None:
    if allowed:
        authorize_resume(caller, owner)
        return
    with pytest.raises(Unauthenticated, match="resume token or principal"):
        authorize_resume(caller, owner)  # worded as for a wrong token (§6.3)


@pytest.mark.parametrize(
    ("caller", "owner", "expected"),
    [("alice", "alice", True), ("alice", "bob", False), ("alice", None, False)],
)
def test_observers_are_the_submitting_principal_by_default(
    caller: str, owner: str | None, expected: bool
) -> None:
    assert observes(caller, owner) is expected
    assert is_submitter(caller, owner or "") is expected


def test_every_subscribe_decision_is_logged_for_audit(caplog: pytest.LogCaptureFixture) -> None:
    """§14: subscriber, target job, target principal and the decision."""
    caplog.set_level("INFO", logger="arcp_grpc.access")
    authorize_subscribe("alice", "job_1", "alice")
    with pytest.raises(PermissionDenied):
        authorize_subscribe("mallory", "job_2", "alice")
    assert [r.getMessage() for r in caplog.records] == [
        "subscribe allowed: alice to job job_1 of alice",
        "subscribe denied: mallory to job job_2 of alice",
    ]
