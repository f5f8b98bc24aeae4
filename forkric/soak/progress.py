"""The live progress line: rewritten in place on a terminal, a plain line every few seconds
otherwise (a CI log, a file)."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from forkric.soak.sampler import Snapshot

PLAIN_EVERY_S = 5.0


@dataclass
class Progress:
    duration_s: float
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.tty = self.stream.isatty()
        self.previous: Snapshot | None = None
        self.last_plain = -PLAIN_EVERY_S
        self.lock = threading.Lock()
        self.width = 0

    def update(self, snap: Snapshot, recycles: int) -> None:
        with self.lock:
            line = self.line(snap, recycles)
            self.previous = snap
            if self.tty:
                self.stream.write("\r" + line.ljust(self.width))
                self.width = len(line)
            elif snap.time_s - self.last_plain >= PLAIN_EVERY_S:
                self.last_plain = snap.time_s
                self.stream.write(line + "\n")
            self.stream.flush()

    def line(self, snap: Snapshot, recycles: int) -> str:
        rate = 0.0
        if self.previous is not None and snap.time_s > self.previous.time_s:
            rate = (snap.served - self.previous.served) / (snap.time_s - self.previous.time_s)
        elapsed = min(max(snap.time_s, 0.0), self.duration_s)
        return (f"forkric soak: {elapsed:4.0f}/{self.duration_s:.0f} s  {rate:7.1f} inv/s  "
                f"{snap.failed} failed  workers {snap.total_pss_kb / 1024:7.1f} MB PSS  "
                f"{recycles} recycled")

    def note(self, text: str) -> None:
        """A line of its own, under the progress line."""
        with self.lock:
            if self.tty and self.width:
                self.stream.write("\n")
                self.width = 0
            self.stream.write(f"forkric soak: warning: {text}\n")
            self.stream.flush()

    def done(self) -> None:
        with self.lock:
            if self.tty and self.width:
                self.stream.write("\n")
                self.stream.flush()
