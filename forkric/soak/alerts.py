"""Warnings that cannot wait for the report: a memory limit that recycles workers on nearly
every call (`--max-worker-memory 2`, meant as 2 GB, cut throughput 28x without a word), failing
invocations, a leak reaching the soak's safety limit. Each is said once, as soon as a snapshot
shows it, while the load runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forkric.soak import logscan, verdict
from forkric.soak.sampler import Snapshot

MIN_RECYCLES = 3  # a verdict on the limit from fewer recycles could be a fluke


@dataclass
class Alerts:
    limit_mb: float
    safety_limit: bool
    log_path: Path
    recycles: list[logscan.Recycle] = field(default_factory=list)
    said: set[str] = field(default_factory=set)
    _offset: int = 0
    _partial: str = ""

    def check(self, snap: Snapshot) -> list[str]:
        """The warnings this snapshot (and the log so far) give for the first time."""
        self._read_log()
        found = []
        quick = sum(1 for r in self.recycles
                    if r.invocations <= verdict.QUICK_RECYCLE_INVOCATIONS)
        if len(self.recycles) >= MIN_RECYCLES and quick * 2 >= len(self.recycles):
            known = [r.first_uss_kb for r in self.recycles if r.first_invocations]
            found.append(self._once("limit", verdict.too_low(
                self.limit_mb, min(known) if known else 0.0)))
        if snap.failed:
            found.append(self._once("failures", f"invocations are failing ({snap.failed} so "
                                                f"far): the soak will fail; the report names "
                                                f"their errors"))
        if self.safety_limit and self.recycles:
            found.append(self._once("safety", f"a worker reached the soak's safety limit of "
                                              f"{self.limit_mb:g} MB (no --max-worker-memory "
                                              f"given): recycled there"))
        return [text for text in found if text]

    def _once(self, key: str, text: str) -> str:
        if key in self.said:
            return ""
        self.said.add(key)
        return text

    def _read_log(self) -> None:
        try:
            with self.log_path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except OSError:
            return
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", "replace")
        complete, _, self._partial = text.rpartition("\n")
        self.recycles += logscan.memory_recycles(complete)
