"""Polyglot tests: stubs for other languages and a Node.js client of the real core."""

from __future__ import annotations

__all__: list[str] = []
