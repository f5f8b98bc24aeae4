"""The status endpoint's document: the queue, the runtime, and each worker from the scoreboard."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from typing import Any

import psutil

from forkric import memory
from forkric.local.invocations import Invocations
from forkric.local.runtime import Runtime


async def status(invocations: Invocations, runtime: Runtime,
                 request_ids: bool = True) -> dict[str, Any]:
    """The status document; a busy worker's request id only when `request_ids` (the service
    shows them to loopback callers only), an idle one's never (it held it last time)."""
    board = runtime.board()
    workers: dict[str, Any] = {}
    if board is not None:
        workers = board.status()
        slots = workers.get("slots", [])
        for slot in slots:
            if not (request_ids and slot.get("state") == "busy"):
                slot["request_id"] = ""
        # Reading smaps takes a while for big processes: off the event loop.
        usages = await asyncio.get_running_loop().run_in_executor(
            None, _usages, [slot["pid"] for slot in slots])
        for slot, usage in zip(slots, usages, strict=True):
            slot.update(usage)
    return {
        "ready": runtime.ready and not runtime.init_failed,
        "queue_depth": len(invocations.pending),
        "in_flight": len(invocations.running),
        "pollers": sum(1 for poller in invocations.pollers if not poller.done()),
        "timeout_s": invocations.timeout_s,
        "max_queue": invocations.max_queue,
        "invocations": asdict(invocations.counts),
        "runtime": {"pid": runtime.pid, "starts": runtime.starts,
                    "init_failed": runtime.init_failed, "exits": runtime.exits[-10:]},
        "workers": workers,
    }


def _usages(pids: list[int]) -> list[dict[str, int]]:
    found = []
    for pid in pids:
        usage: dict[str, int] = {}
        with contextlib.suppress(psutil.Error, OSError):
            sample = memory.usage(pid)
            usage = {"rss_kb": sample.rss_kb, "uss_kb": sample.uss_kb, "pss_kb": sample.pss_kb}
        found.append(usage)
    return found
