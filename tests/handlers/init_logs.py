"""Logs at import time, then raises: the init warning and error lines follow the user's lines."""

from __future__ import annotations

import logging
from typing import Any

print("printed at import")
logging.warning("warning at import")
raise RuntimeError("failed after logging")


def handler(event: Any, context: Any) -> Any:
    return "unreachable"
