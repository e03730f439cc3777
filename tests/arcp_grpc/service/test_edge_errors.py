"""The one mapping of a failure to the client's ARCP error (`service.edge_errors`, §12):
the store's own errors in the client's terms, anything unforeseen as a logged bug
(issue 20: no driver text reaches a client)."""

from __future__ import annotations

import logging

import grpc
import pytest

from arcp_grpc.errors import InternalError, InvalidRequest, QuotaExceeded, StoreUnreachable
from arcp_grpc.grpc_status import to_status
from arcp_grpc.service.edge_errors import arcp_error
from arcp_grpc.store import StoreFailed, StoreRejected


def test_an_arcp_error_is_the_answer_as_raised() -> None:
    raised = QuotaExceeded("3 running jobs is the cap", details={"cap": "jobs"})
    assert arcp_error(raised, "SubmitJob") is raised


def test_a_store_unreachable_now_is_retryable_unavailable() -> None:
    error = arcp_error(StoreFailed("the store is unreachable", transient=True), "GetJob")
    assert isinstance(error, StoreUnreachable)
    assert error.retryable
    assert error.details["reason"] == "STORE_UNREACHABLE"
    assert to_status(error).code == grpc.StatusCode.UNAVAILABLE


def test_a_failed_store_is_internal_in_the_stores_words() -> None:
    error = arcp_error(StoreFailed("the store could not commit"), "SubmitJob")
    assert type(error) is InternalError
    assert error.message == "the store could not commit"
    assert to_status(error).code == grpc.StatusCode.INTERNAL


def test_a_rejected_value_is_the_requests_error_with_its_details() -> None:
    rejected = StoreRejected("cursor is not one this runtime issued", details={"field": "cursor"})
    error = arcp_error(rejected, "ListJobs")
    assert type(error) is InvalidRequest
    assert error.message == "cursor is not one this runtime issued"
    assert error.details == {"field": "cursor"}
    assert to_status(error).code == grpc.StatusCode.INVALID_ARGUMENT


def test_anything_else_is_a_bug_logged_with_its_traceback_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bug = ValueError('relation "jobs" does not exist')
    with caplog.at_level(logging.ERROR, logger="arcp_grpc.service"):
        error = arcp_error(bug, "GetJob")
    assert type(error) is InternalError
    assert error.message == "internal error"
    (record,) = caplog.records
    assert "GetJob" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is bug
