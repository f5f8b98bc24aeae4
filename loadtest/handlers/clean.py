"""The clean baseline: it allocates a scratch buffer of SCRATCH_KB (default 64) per call and
lets it go, so its memory churns like a real handler's but does not grow."""

from __future__ import annotations

import hashlib
import os
from typing import Any

SCRATCH_BYTES = int(float(os.environ.get("SCRATCH_KB", "64")) * 1024)


def handler(event: Any, context: Any) -> dict[str, Any]:
    scratch = b"\x5a" * SCRATCH_BYTES
    return {"event": event, "digest": hashlib.sha256(scratch).hexdigest()[:16]}
