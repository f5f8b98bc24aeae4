"""A handler that leaks: it keeps LEAK_KB kilobytes (default 64) from every call, for good.

The kept bytes are written (not a zeroed allocation, which the kernel may leave unbacked), so
each call adds exactly that much private memory to the worker: a soak must find the rate.

    forkric soak loadtest.handlers.leaky.handler --duration 30 --max-worker-memory 256
"""

from __future__ import annotations

import os
from typing import Any

LEAK_BYTES = int(float(os.environ.get("LEAK_KB", "64")) * 1024)
_kept: list[bytes] = []  # the classic leak: a module-level cache nobody empties


def handler(event: Any, context: Any) -> dict[str, int]:
    _kept.append(b"\xa5" * LEAK_BYTES)
    return {"kept": len(_kept), "kept_kb": len(_kept) * LEAK_BYTES // 1024}
