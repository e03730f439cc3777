"""Server launchers: each one runs a single server in its own process for the harness.

Every launcher binds 127.0.0.1 on a free port, writes a JSON "port file" once it is ready,
and exits on SIGTERM or after ``--max-seconds`` so a lost harness never leaves it running.
"""

from __future__ import annotations

__all__: list[str] = []
