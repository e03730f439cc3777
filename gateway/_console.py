"""The web console's static files: which request path gets which bytes and headers.

The console (`gateway/console/`) is plain HTML, CSS and ES modules committed in
the repository, so nothing is built at install time. The gateway serves them
from its HTTP upgrade hook, next to the health path, and the page then speaks
ARCP over the same `/arcp` WebSocket as any other client: the gateway stays a
translator (DESIGN.md) and the console has no private API.

Pure: files are read once when the gateway starts, and `ConsoleFiles.lookup`
maps a path to a `StaticFile` without touching a socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "ConsoleFiles", "StaticFile"]

CONSOLE_PATH = "/console"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

# Everything the page loads comes from the gateway itself: no inline script or
# style (so injected markup cannot run), no frames, no forms posting elsewhere.
# `connect-src 'self'` admits the same-origin ws:/wss: socket (CSP Level 3).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)


@dataclass(frozen=True)
class StaticFile:
    """One response body and its media type."""

    body: bytes
    content_type: str


class ConsoleFiles:
    """The console's files, read from the package once, keyed by request path."""

    def __init__(self, arcp_path: str) -> None:
        files: dict[str, StaticFile] = {}
        for entry in resources.files("gateway").joinpath("console").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in _TYPES:
                files[f"{CONSOLE_PATH}/{entry.name}"] = StaticFile(
                    entry.read_bytes(), _TYPES[suffix]
                )
        index = files[f"{CONSOLE_PATH}/index.html"]
        files[CONSOLE_PATH] = files[f"{CONSOLE_PATH}/"] = index
        # Where the page opens its socket: the gateway's configured ARCP path, so a
        # deployment that moves `gateway.path` needs no edit to the page.
        settings = json.dumps({"arcp_path": arcp_path}).encode()
        files[f"{CONSOLE_PATH}/settings.json"] = StaticFile(settings, "application/json")
        self._files = files

    def lookup(self, path: str) -> StaticFile | None:
        """The file served at `path`, or None when the path is not the console's."""
        return self._files.get(path)

    @staticmethod
    def owns(path: str) -> bool:
        """Whether `path` is under the console (an unknown file there is a 404)."""
        return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")
