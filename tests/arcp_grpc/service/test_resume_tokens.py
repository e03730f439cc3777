"""Resume tokens in `arcp_grpc.service.resume_tokens` (§6.3; DESIGN.md "Resume tokens"): which
token may resume a session when, decided by one pure function that both the
in-memory sessions (SQLite) and the stored ones (PostgreSQL) use."""

from __future__ import annotations

import logging

import pytest

from arcp_grpc.errors import Unauthenticated
from arcp_grpc.service.resume_tokens import RETIRED, ResumeTokens, check_resume_token, digest

OLD, NEW, OTHER = digest("rt_old"), digest("rt_new"), digest("rt_other")


def test_the_current_token_resumes() -> None:
    check_resume_token("sess_1", NEW, NEW, OLD, RETIRED, now=100.0)


def test_the_previous_token_resumes_until_its_window_ends() -> None:
    check_resume_token("sess_1", OLD, NEW, OLD, 160.0, now=159.9)
    with pytest.raises(Unauthenticated):
        check_resume_token("sess_1", OLD, NEW, OLD, 160.0, now=160.0)


def _refused(caplog: pytest.LogCaptureFixture, presented: bytes, previous_until: float) -> str:
    """What refusing `presented` (current NEW, previous OLD) logs at WARNING."""
    with (
        caplog.at_level(logging.WARNING, logger="arcp_grpc.sessions"),
        pytest.raises(Unauthenticated),
    ):
        check_resume_token("sess_1", presented, NEW, OLD, previous_until, now=100.0)
    return caplog.text


def test_a_retired_token_is_refused_and_logged_as_possible_theft(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = _refused(caplog, OLD, RETIRED)
    assert "sess_1" in logged
    assert "possible theft" in logged


def test_an_unknown_token_is_refused_without_a_theft_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert "theft" not in _refused(caplog, OTHER, 160.0)


def test_a_session_keeps_the_token_it_was_resumed_with_until_proof() -> None:
    tokens = ResumeTokens()
    first = tokens.rotate()
    second = tokens.rotate_after_resume(first, window_sec=600)
    tokens.check("sess_1", first)  # the welcome carrying `second` may have been lost
    third = tokens.rotate_after_resume(first, window_sec=600)  # a second resume, same old token
    tokens.check("sess_1", first)
    assert tokens.prove() is True
    assert tokens.prove() is False  # once
    tokens.check("sess_1", third)
    for stale in (first, second):
        with pytest.raises(Unauthenticated):
            tokens.check("sess_1", stale)
