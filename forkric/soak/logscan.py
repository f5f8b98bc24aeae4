"""What the runtime's log says about a soak: how each worker's lifetime ended, and, with
FORKRIC_TRACE_LEAKS=1, the allocation sites that grew in the workers recycled for memory."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RECYCLED = re.compile(r"forkric: recycling worker \d+ \(pid (\d+)\)")
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
