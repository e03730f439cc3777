"""Resume tokens in `arcp_grpc.service.sessions` (§6.3; DESIGN.md "Resume tokens"): which
token may resume a session when, decided by one pure function that both the
in-memory sessions (SQLite) and the stored ones (PostgreSQL) use."""

from __future__ import annotations

import logging

import pytest

from arcp_grpc.auth import Principal
from arcp_grpc.errors import Unauthenticated
from arcp_grpc.service.sessions import RETIRED, Session, SessionLimits, check_resume_token, digest

OLD, NEW, OTHER = digest("rt_old"), digest("rt_new"), digest("rt_other")


def test_the_current_token_resumes() -> None:
    check_resume_token("sess_1", NEW, NEW, OLD, RETIRED, now=100.0)


def test_the_previous_token_resumes_until_its_window_ends() -> None:
    check_resume_token("sess_1", OLD, NEW, OLD, 160.0, now=159.9)
    with pytest.raises(Unauthenticated):
        check_resume_token("sess_1", OLD, NEW, OLD, 160.0, now=160.0)


def test_a_retired_token_is_refused_and_logged_as_possible_theft(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="arcp_grpc.sessions"),
        pytest.raises(Unauthenticated),
    ):
        check_resume_token("sess_1", OLD, NEW, OLD, RETIRED, now=100.0)
    assert "sess_1" in caplog.text
    assert "possible theft" in caplog.text


def test_an_unknown_token_is_refused_without_a_theft_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="arcp_grpc.sessions"),
        pytest.raises(Unauthenticated),
    ):
        check_resume_token("sess_1", OTHER, NEW, OLD, 160.0, now=100.0)
    assert "theft" not in caplog.text


def test_a_session_keeps_the_token_it_was_resumed_with_until_proof() -> None:
    session = Session("sess_1", Principal("alice"), frozenset(), SessionLimits())
    first = session.rotate_token()
    second = session.rotate_after_resume(first)
    session.check_token(first)  # the welcome carrying `second` may have been lost
    third = session.rotate_after_resume(first)  # a second resume with the same old token
    session.check_token(first)
    assert session.token_proven() is True
    assert session.token_proven() is False  # once
    session.check_token(third)
    for stale in (first, second):
        with pytest.raises(Unauthenticated):
            session.check_token(stale)
