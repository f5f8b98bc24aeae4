"""A slow handler: it sleeps SLEEP_MS milliseconds (default 200) per call, as one waiting on a
database or another service would; an event may say {"sleep_ms": 50}. Workers, not CPUs, bound
its throughput: N workers serve about N * 1000 / SLEEP_MS calls a second."""

from __future__ import annotations

import os
import time
from typing import Any

SLEEP_MS = float(os.environ.get("SLEEP_MS", "200"))


def handler(event: Any, context: Any) -> dict[str, float]:
    options = event if isinstance(event, dict) else {}
    sleep_ms = float(options.get("sleep_ms", SLEEP_MS))
    time.sleep(sleep_ms / 1000)
    return {"slept_ms": sleep_ms, "remaining_ms": context.get_remaining_time_in_millis()}
