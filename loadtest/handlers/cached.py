"""A handler with a bounded cache, not a leak: it keeps its last CACHE_ENTRIES (default 16)
results of CACHE_KB kilobytes (default 1024) each, so a worker's private memory grows for its
first CACHE_ENTRIES invocations, then stays flat at a working set of CACHE_ENTRIES x CACHE_KB.

Under a memory limit below that working set, its workers are recycled every few invocations:

    forkric soak loadtest.handlers.cached.handler --max-worker-memory 24   # CACHE_KB=4096
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

CACHE_BYTES = int(float(os.environ.get("CACHE_KB", "1024")) * 1024)
_recent: deque[bytes] = deque(maxlen=int(os.environ.get("CACHE_ENTRIES", "16")))


def handler(event: Any, context: Any) -> dict[str, int]:
    _recent.append(b"\x3c" * CACHE_BYTES)  # written, so the pages are the worker's own
    return {"cached": len(_recent)}
