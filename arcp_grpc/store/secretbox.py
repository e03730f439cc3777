"""Encryption at rest for secrets in the store (credential values, §14).

AES-256-GCM with a key from configuration or a key file generated on first
use (mode 0600). Each sealed blob is `version byte | 12-byte nonce |
ciphertext+tag`; the associated data binds a blob to its row so a sealed
value cannot be moved to another job.

A blob that holds secrets only sometimes (a job's `JobAccepted` carries
credentials only when its lease grants them) is sealed when it does, else
stored as `plain(...)`, `0x00 | plaintext`, like the events the store keeps
in the clear; `open_any` reads either. Sealing every acceptance cost a nonce
syscall and an encryption per job for nothing to hide.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from arcp_grpc.store.errors import StoreFailed

__all__ = ["SecretBox", "StoreKeyError"]

_VERSION = b"\x01"
_PLAIN = b"\x00"  # a blob with nothing secret in it (`plain`)
_EXPECTED = "expected a base64 AES-256 key (32 bytes)"


class StoreKeyError(ValueError):
    """The configured key is not a base64 AES-256 key, or its file cannot be read.

    The message names the file, never the key's text; whoever reports it names the
    setting (`store.key_file`, `core.store_key`)."""


class SecretBox:
    """Seals and opens blobs with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise StoreKeyError(_EXPECTED + f", found {len(key)} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Load the key (base64) from `path`, creating it with a random key if absent."""
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            data = path.read_bytes()
        except OSError as exc:
            raise StoreKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            return cls.from_text(data.decode("ascii"))
        except UnicodeDecodeError:
            raise StoreKeyError(f"{path}: {_EXPECTED}, found text that is not base64") from None
        except StoreKeyError as exc:
            raise StoreKeyError(f"{path}: {exc}") from None

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """A key given as base64 text (configuration or key file)."""
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise StoreKeyError(_EXPECTED + ", found text that is not base64") from None
        return cls(key)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if sealed[:1] != _VERSION:
            raise StoreFailed("sealed blob has an unknown format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context)
        except InvalidTag:
            raise StoreFailed(
                "sealed blob failed authentication (wrong store key or tampering)"
            ) from None

    @staticmethod
    def plain(plaintext: bytes) -> bytes:
        """`plaintext` marked as holding nothing secret, for `open_any`."""
        return _PLAIN + plaintext

    def open_any(self, stored: bytes, context: bytes) -> bytes:
        """The plaintext of a blob stored `plain` or sealed."""
        return stored[1:] if stored[:1] == _PLAIN else self.open(stored, context)
