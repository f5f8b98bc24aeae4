"""Raises at import with a 7 MB message: an init error over the payload limit."""

from __future__ import annotations

from typing import Any

raise ValueError("x" * (7 * 1024 * 1024))


def handler(event: Any, context: Any) -> Any:  # never reached
    return event
