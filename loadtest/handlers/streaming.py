"""Streaming handlers for the streaming benchmark and Locust user.

`ticks`: `chunks` chunks (default 100) of `size` bytes (default 64), `gap_ms` apart (default 10),
as a model streams tokens. `bulk`: `mb` MiB (default 100) in 64 KiB chunks, each made afresh, as
an export streams a large file; the worker's memory stays flat whatever `mb` is. The options are
the event's, or, for a function URL's event (payload format 2.0), its JSON body's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from forkric import response_stream

BLOCK = 64 * 1024


def _options(event: Any) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("version") == "2.0":
        event = json.loads(event.get("body") or "{}")
    return event if isinstance(event, dict) else {}


@response_stream
def ticks(event: Any, context: Any) -> Iterator[bytes]:
    options = _options(event)
    chunks = int(options.get("chunks", 100))
    gap_s = float(options.get("gap_ms", 10)) / 1000
    chunk = b"t" * int(options.get("size", 64))
    for index in range(chunks):
        if index and gap_s:
            time.sleep(gap_s)
        yield chunk


@response_stream
def bulk(event: Any, context: Any) -> Iterator[bytes]:
    options = _options(event)
    block = b"b" * BLOCK
    for _ in range(int(float(options.get("mb", 100)) * 1024 * 1024) // BLOCK):
        yield bytes(block)
