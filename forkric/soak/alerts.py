"""Warnings that cannot wait for the report: a memory limit that recycles workers on nearly
every call (`--max-worker-memory 2`, meant as 2 GB, cut throughput 28x without a word), failing
invocations, a leak reaching the soak's safety limit. Each is said once, as soon as a snapshot
shows it, while the load runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forkric.soak import logscan, verdict
from forkric.soak.sampler import Snapshot


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
        if len(self.recycles) >= verdict.MIN_RECYCLES:
            found.append(self._once("limit", verdict.limit_warning(
                self.limit_mb, self.safety_limit, snap.served, self.recycles)))
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
        if not text or key in self.said:
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
