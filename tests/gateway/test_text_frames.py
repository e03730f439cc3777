"""The gateway writes server text frames itself (`gateway._connection.text_frame`);
they must be byte-identical to what `websockets` would write (RFC 6455 §5.2)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from gateway._connection import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_match_the_library(size: int) -> None:
    payload = ("é" * size).encode()[:size]  # multi-byte text, cut to the exact length
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected
