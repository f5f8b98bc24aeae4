"""A handler in a nested package, named `pkg/sub/mod.handler`."""

from __future__ import annotations

from typing import Any


def handler(event: Any, context: Any) -> Any:
    return {"module": __name__, "event": event}
