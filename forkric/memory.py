"""Memory of a process: RSS from /proc (cheap), USS and PSS from psutil (reads smaps)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size, from one read of /proc/PID/statm: cheap enough for every invocation."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE_KB
    except FileNotFoundError:
        if pid == "self":  # not Linux
            return psutil.Process().memory_info().rss // 1024
        raise


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    uss_kb: int
    pss_kb: int


def usage(pid: int | None = None) -> Usage:
    """RSS, USS (private memory: what the process would free on exit) and PSS of one process."""
    info = psutil.Process(pid).memory_full_info()
    return Usage(info.rss // 1024, info.uss // 1024, getattr(info, "pss", info.uss) // 1024)
