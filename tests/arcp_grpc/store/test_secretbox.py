"""Encryption at rest (§14): sealed blobs, and blobs kept sealed only when secret."""

from __future__ import annotations

import os

import pytest

from arcp_grpc.store import StoreFailed
from arcp_grpc.store.secretbox import SecretBox


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_a_secret_is_sealed_and_bound_to_its_row(box: SecretBox) -> None:
    stored = box.seal(b"token-value", b"job_1")
    assert b"token-value" not in stored
    assert box.open_any(stored, b"job_1") == b"token-value"
    with pytest.raises(StoreFailed, match="failed authentication"):
        box.open_any(stored, b"job_2")  # moved to another row


def test_a_blob_without_secrets_is_stored_plain(box: SecretBox) -> None:
    stored = SecretBox.plain(b"no secrets")
    assert stored == b"\x00no secrets"
    assert box.open_any(stored, b"job_1") == b"no secrets"


def test_open_refuses_a_plain_blob_where_a_sealed_one_belongs(box: SecretBox) -> None:
    with pytest.raises(StoreFailed, match="unknown format"):
        box.open(SecretBox.plain(b"credential"), b"cred_1")


def test_another_key_cannot_open_a_sealed_blob(box: SecretBox) -> None:
    stored = box.seal(b"secret", b"job_1")
    with pytest.raises(StoreFailed):
        SecretBox(os.urandom(32)).open_any(stored, b"job_1")
