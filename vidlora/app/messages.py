"""Message helpers shared by the app's modules (pipelines, CLI)."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when empty):
    library errors often carry pages of context that one CLI line cannot hold."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
