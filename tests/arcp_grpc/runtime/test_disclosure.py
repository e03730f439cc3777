"""What one caller may see of a job (`arcp_grpc.runtime.disclosure`): credential values
to the submitter only, while the job runs, negotiated and over a transport that may
carry them (§6.2, §9.8, §14); budgets to every observer that negotiated them (§7.6);
the stored acceptance bytes themselves unless a rule strips a field (§7.2)."""

from __future__ import annotations

import pytest

from arcp_grpc.runtime.disclosure import (
    BUDGET_FEATURE,
    CLEAR,
    CREDENTIALS_FEATURE,
    JOB_SERVICE_FEATURES,
    Disclosure,
)
from arcp_grpc.v1 import events_pb2, jobs_pb2, lease_pb2

ALL = JOB_SERVICE_FEATURES
NONE: frozenset[str] = frozenset()
CREDENTIAL = lease_pb2.Credential(id="cred_1", scheme="bearer", value="sk-1")


class Verdict:
    """A transport verdict that counts how often it is asked (it can be dear)."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.asked = 0

    def carries_credentials(self) -> bool:
        self.asked += 1
        return self.allowed


# (caller, features, transport allows, submitter, running, values shown)
CREDENTIAL_RULES = [
    ("alice", ALL, True, "alice", True, True),  # the submitter, negotiated, running, clear
    ("bob", ALL, True, "alice", True, False),  # §14: another principal never
    ("alice", ALL, True, "alice", False, False),  # §9.8.2: revoked once the job ended
    ("alice", frozenset({BUDGET_FEATURE}), True, "alice", True, False),  # §6.2
    ("alice", ALL, False, "alice", True, False),  # §14: plaintext, not local
]


@pytest.mark.parametrize(
    ("caller", "features", "allows", "submitter", "running", "shown"), CREDENTIAL_RULES
)
def test_credential_values_follow_every_rule(
    caller: str,
    features: frozenset[str],
    allows: bool,
    submitter: str,
    running: bool,
    shown: bool,
) -> None:
    disclosure = Disclosure(caller, features, Verdict(allows))
    values = disclosure.credentials(submitter, running=running, values=[CREDENTIAL])
    assert list(values) == ([CREDENTIAL] if shown else [])
    summary = disclosure.summary(
        jobs_pb2.JobSummary(job_id="job_1"), submitter, running=running, credentials=[CREDENTIAL]
    )
    assert list(summary.credentials) == ([CREDENTIAL] if shown else [])
    rotation_ok = disclosure.rotations(submitter)
    assert rotation_ok is (caller == submitter and CREDENTIALS_FEATURE in features and allows)


@pytest.mark.parametrize(
    ("caller", "features", "running", "values"),
    [
        ("alice", ALL, True, []),  # nothing to show
        ("bob", ALL, True, [CREDENTIAL]),  # not the submitter
        ("alice", ALL, False, [CREDENTIAL]),  # ended
        ("alice", NONE, True, [CREDENTIAL]),  # not negotiated
    ],
)
def test_the_transport_is_asked_only_when_a_value_would_go_out(
    caller: str, features: frozenset[str], running: bool, values: list[lease_pb2.Credential]
) -> None:
    verdict = Verdict(True)
    Disclosure(caller, features, verdict).credentials("alice", running=running, values=values)
    assert verdict.asked == 0


@pytest.mark.parametrize(
    ("caller", "features", "budget_shown"),
    [("alice", ALL, True), ("bob", ALL, True), ("alice", frozenset({CREDENTIALS_FEATURE}), False)],
)
def test_budget_counters_follow_the_observer_and_its_features(
    caller: str, features: frozenset[str], budget_shown: bool
) -> None:
    """§7.6: non-secret bounds follow the observing principal, not the submitter."""
    summary = jobs_pb2.JobSummary(job_id="job_1", budget={"USD": "3.58"})
    Disclosure(caller, features).summary(summary, "alice", running=True, credentials=())
    assert dict(summary.budget) == ({"USD": "3.58"} if budget_shown else {})


@pytest.mark.parametrize(("caller", "features"), [("alice", NONE), ("bob", ALL)])
def test_the_input_goes_to_the_submitter_only(caller: str, features: frozenset[str]) -> None:
    """Kept so that its owner can run the job again; whatever features it negotiated."""
    summary = jobs_pb2.JobSummary(job_id="job_1")
    summary.input.string_value = "private"
    Disclosure(caller, features).summary(summary, "alice", running=False, credentials=())
    assert summary.HasField("input") is (caller == "alice")


def _accepted(*, credentials: bool, budget: bool) -> bytes:
    accepted = jobs_pb2.JobAccepted(job_id="job_1")
    if credentials:
        accepted.credentials.append(CREDENTIAL)
    if budget:
        accepted.budget["USD"] = "5.00"
    return accepted.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    ("features", "allows", "credentials", "budget", "kept"),
    [
        (ALL, True, True, True, (True, True)),
        (frozenset({BUDGET_FEATURE}), True, True, True, (False, True)),
        (frozenset({CREDENTIALS_FEATURE}), True, True, True, (True, False)),
        (NONE, True, False, False, (False, False)),
        (ALL, False, True, True, (False, True)),  # §14: a plaintext transport
    ],
)
def test_acceptance_strips_only_what_a_rule_forbids(
    features: frozenset[str],
    allows: bool,
    credentials: bool,
    budget: bool,
    kept: tuple[bool, bool],
) -> None:
    stored = _accepted(credentials=credentials, budget=budget)
    shown = Disclosure("alice", features, Verdict(allows)).accepted(stored)
    message = jobs_pb2.JobAccepted.FromString(shown)
    assert (bool(message.credentials), bool(message.budget)) == (
        credentials and kept[0],
        budget and kept[1],
    )
    if (credentials, budget) == (credentials and kept[0], budget and kept[1]):
        assert shown is stored  # §7.2: nothing stripped, the stored bytes themselves
    # Deterministic: the same caller sees the same bytes on a replay (§7.2).
    assert Disclosure("alice", features, Verdict(allows)).accepted(stored) == shown


def test_a_clear_caller_with_every_feature_gets_the_stored_bytes_unparsed() -> None:
    stored = b"\xff not a message"  # never parsed on this path
    assert Disclosure("alice", ALL, CLEAR).accepted(stored) is stored


def _rotation() -> bytes:
    event = events_pb2.JobEvent(job_id="job_1", job_seq=2)
    event.status.phase = "credential_rotated"
    return event.SerializeToString()


def _log(message: str) -> bytes:
    event = events_pb2.JobEvent(job_id="job_1", job_seq=1)
    event.log.message = message
    return event.SerializeToString()


def test_events_are_the_batch_itself_unless_a_rotation_is_withheld() -> None:
    plain = [_log("a"), _log("b")]
    verdict = Verdict(False)
    assert Disclosure("alice", ALL, verdict).events(plain, "alice") is plain
    assert verdict.asked == 0  # no rotation in the batch: the transport is not judged
    lookalike = [_log("credential_rotated, as text")]  # the cheap test passes, the parse not
    assert Disclosure("alice", ALL, verdict).events(lookalike, "alice") == lookalike
    mixed = [_log("a"), _rotation()]
    assert Disclosure("alice", ALL, CLEAR).events(mixed, "alice") is mixed
    assert Disclosure("alice", ALL, verdict).events(mixed, "alice") == [mixed[0]]
    assert Disclosure("bob", ALL, CLEAR).events(mixed, "alice") == [mixed[0]]
    assert Disclosure("alice", NONE, CLEAR).events(mixed, "alice") == [mixed[0]]
