"""Memory of a process: RSS from /proc (cheap), USS and PSS from psutil (reads smaps)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

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


def uss_kb() -> int:
    return int(psutil.Process().memory_full_info().uss) // 1024


class Watch:
    """Decides, after each invocation, whether this worker's private memory is over its limit,
    reading USS (a page-table walk: about 10 ms for a 250 MB process) as seldom as is safe.

    RSS bounds USS from above and costs one read of /proc: under the limit, nothing more is done.
    Over it (a heavy handler's shared pages count in RSS), USS is read unless it cannot have
    crossed the limit yet: the last USS read, plus all the RSS grown since (new private pages show
    in RSS at once, whatever the leak's shape), plus the fastest growth RSS did not show (shared
    pages turned private by writes) seen per invocation, for every invocation since and the next;
    and at least once a second. A leak that speeds up is thus caught within one invocation.
    """

    MAX_SKIP_S = 1.0

    def __init__(self, limit_kb: int, read_rss: Any = rss_kb, read_uss: Any = uss_kb,
                 clock: Any = time.monotonic) -> None:
        self.limit_kb = limit_kb
        self.read_rss, self.read_uss, self.clock = read_rss, read_uss, clock
        self.last_uss = 0
        self.last_rss = 0  # RSS when USS was last read
        self.last_served = 0
        self.last_time = 0.0
        self.rate = 0.0  # the largest USS growth per invocation that RSS did not show, kB
        self.measured = 0

    def check(self, served: int) -> tuple[int, int | None]:
        """(RSS, USS or None if not read) after `served` invocations, kB."""
        rss = self.read_rss()
        if rss <= self.limit_kb:
            return rss, None
        since = served - self.last_served
        grown = max(rss - self.last_rss, 0)
        projected = self.last_uss + grown + self.rate * (since + 1)
        if self.measured >= 2 and projected < self.limit_kb \
                and self.clock() - self.last_time < self.MAX_SKIP_S:
            return rss, None
        uss = self.read_uss()
        if self.measured and since:
            self.rate = max(self.rate, (uss - self.last_uss - grown) / since)
        self.last_uss, self.last_rss = uss, rss
        self.last_served, self.last_time = served, self.clock()
        self.measured += 1
        return rss, uss
