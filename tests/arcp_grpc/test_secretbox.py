"""Encryption at rest (§14): sealed blobs, and blobs kept sealed only when secret."""

from __future__ import annotations

import os

import pytest

from arcp_grpc._secretbox import SecretBox
from arcp_grpc.errors import InternalError


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_a_secret_is_sealed_and_bound_to_its_row(box: SecretBox) -> None:
    stored = box.keep(b"token-value", b"job_1", secret=True)
    assert b"token-value" not in stored
    assert box.kept(stored, b"job_1") == b"token-value"
    with pytest.raises(InternalError, match="failed authentication"):
        box.kept(stored, b"job_2")  # moved to another row


def test_a_blob_without_secrets_is_kept_plain(box: SecretBox) -> None:
    stored = box.keep(b"no secrets", b"job_1", secret=False)
    assert stored == b"\x00no secrets"
    assert box.kept(stored, b"job_1") == b"no secrets"


def test_blobs_sealed_before_keep_still_open(box: SecretBox) -> None:
    assert box.kept(box.seal(b"old", b"job_1"), b"job_1") == b"old"


def test_another_key_cannot_open_a_sealed_blob(box: SecretBox) -> None:
    stored = box.keep(b"secret", b"job_1", secret=True)
    with pytest.raises(InternalError):
        SecretBox(os.urandom(32)).kept(stored, b"job_1")
