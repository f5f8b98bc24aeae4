"""The processes a benchmark measures: a runtime's process tree and its CPU time."""

from __future__ import annotations

import contextlib

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """Every descendant of `pid`: under the RIE, the runtime (supervisor and workers)."""
    return psutil.Process(pid).children(recursive=True)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User plus system CPU time of the processes still alive."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total
