"""A helper in another module, so that a stack trace crosses files."""

from __future__ import annotations


def deep(n: int) -> None:
    if n <= 0:
        raise KeyError("raised three calls deep in another module")
    deep(n - 1)
