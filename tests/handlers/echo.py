"""The event as the handler received it: its type and its repr (JSON parsed, or raw bytes)."""

from __future__ import annotations

from typing import Any


def handler(event: Any, context: Any) -> Any:
    return {"type": type(event).__name__, "repr": repr(event)}
