"""What the runtime's log says about a soak: how each worker's lifetime ended, what each worker
recycled for memory had grown by, and, with FORKRIC_TRACE_LEAKS=1, the allocation sites that
grew in those workers."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RECYCLED = re.compile(r"forkric: recycling worker \d+ \(pid (\d+)\)")
# The worker's own line: "... private memory 80.1 MB over the 80 MB limit after 1250
# invocations (4.6 MB after 1)".
_MEMORY_RECYCLE = re.compile(
    r"forkric: recycling worker (?P<worker>\d+) \(pid (?P<pid>\d+)\): private memory "
    r"(?P<uss>[\d.]+) MB over the [\d.]+ MB limit after (?P<served>\d+) invocations"
    r"(?: \((?P<first_uss>[\d.]+) MB after (?P<first_served>\d+)\))?")
_DIED = re.compile(r"forkric: worker \d+ \(pid (\d+)\) died")
_KILLED = re.compile(r"forkric: worker \d+ \(pid (\d+)\) is [\d.]+ s past the deadline")
# tracemalloc's StatisticDiff: "<file>:<line>: size=12.5 MiB (+12.5 MiB), count=..."
_SITE = re.compile(r"forkric: leak site: (?P<site>.+?:\d+): size=(?P<size>[\d.]+ \w+) "
                   r"\((?P<growth>[+-][\d.]+ \w+)\)")
_UNITS_KB = {"B": 1 / 1024, "KiB": 1.0, "MiB": 1024.0, "GiB": 1024.0 ** 2}


def lifetime_ends(log: str) -> dict[int, str]:
    """pid -> 'recycle', 'crash' or 'kill', for every worker whose end the log tells."""
    ends: dict[int, str] = {}
    for kind, pattern in (("recycle", _RECYCLED), ("crash", _DIED), ("kill", _KILLED)):
        for match in pattern.finditer(log):
            ends.setdefault(int(match.group(1)), kind)
    return ends


@dataclass(frozen=True)
class Recycle:
    """A worker recycled for memory: its private memory (USS) after its first invocation and at
    its recycle. Right after the fork a worker's USS is near zero (every page is shared), so
    these two points measure its growth per invocation over its whole lifetime, however short."""

    pid: int
    worker: int
    invocations: int  # served when it was recycled
    uss_kb: float
    first_invocations: int  # served when its first USS was read (0: not logged, USS taken as 0)
    first_uss_kb: float


def memory_recycles(log: str) -> list[Recycle]:
    """Every recycle for memory the log tells of, in order."""
    found = []
    for match in _MEMORY_RECYCLE.finditer(log):
        first_uss = match.group("first_uss")
        found.append(Recycle(
            int(match.group("pid")), int(match.group("worker")), int(match.group("served")),
            float(match.group("uss")) * 1024, int(match.group("first_served") or 0),
            float(first_uss or 0) * 1024))
    return found


def to_kb(text: str) -> float:
    number, _, unit = text.strip().partition(" ")
    return float(number) * _UNITS_KB.get(unit, 1.0)


@dataclass
class LeakSite:
    site: str  # file:line
    growth_kb: float  # the largest growth one recycled worker saw there
    workers: int  # how many recycled workers named it

    def as_dict(self) -> dict[str, object]:
        return {"site": self.site, "growth_kb": round(self.growth_kb, 1),
                "growth_mb": round(self.growth_kb / 1024, 2), "workers": self.workers}


def leak_sites(log: str, limit: int = 10) -> list[LeakSite]:
    """The sites that grew, most growth first; those that shrank are left out."""
    found: dict[str, LeakSite] = {}
    for match in _SITE.finditer(log):
        growth = to_kb(match.group("growth"))
        if growth <= 0:
            continue
        site = found.setdefault(match.group("site"), LeakSite(match.group("site"), 0.0, 0))
        site.growth_kb = max(site.growth_kb, growth)
        site.workers += 1
    return sorted(found.values(), key=lambda s: (s.growth_kb, s.workers), reverse=True)[:limit]
