"""Once a second: every worker's pid and invocations (from the scoreboard, through `forkric
local`'s `GET /status`) and its RSS, USS and PSS (forkric.memory), as one snapshot."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from forkric import memory

INTERVAL_S = 1.0
COUNTERS = ("recycles", "crashes", "kills", "spawns")


@dataclass(frozen=True)
class Sample:
    """One worker at one moment."""

    time_s: float  # since the load started (negative: before it)
    worker: int  # its scoreboard slot: a replacement takes the same slot
    pid: int
    rss_kb: int
    uss_kb: int
    pss_kb: int
    invocations: int  # served by this pid so far
    state: str


@dataclass(frozen=True)
class Snapshot:
    time_s: float
    samples: tuple[Sample, ...]
    counters: dict[str, int]  # the supervisor's, since the current runtime started
    runtime_start: int  # which runtime (forkric local restarts one that died as a whole)
    served: int  # invocations that ended (succeeded, function errors, timeouts), by the service
    failed: int  # of those, and the rejected ones, how many failed

    @property
    def total_pss_kb(self) -> int:
        return sum(sample.pss_kb for sample in self.samples)


def snapshot(status: dict[str, Any], time_s: float) -> Snapshot:
    """A snapshot from `GET /status`, reading the memory of a worker it did not measure."""
    workers = status.get("workers") or {}
    samples = tuple(sample for sample in map(
        lambda slot: _sample(slot, time_s), workers.get("slots", [])) if sample is not None)
    counts = status.get("invocations") or {}
    return Snapshot(
        time_s=time_s, samples=samples,
        counters={name: int(workers.get(name, 0)) for name in COUNTERS},
        runtime_start=int((status.get("runtime") or {}).get("starts", 1)),
        served=sum(int(counts.get(name, 0))
                   for name in ("succeeded", "function_errors", "timeouts")),
        failed=sum(int(counts.get(name, 0)) for name in ("function_errors", "rejected")))


def _sample(slot: dict[str, Any], time_s: float) -> Sample | None:
    pid = int(slot.get("pid") or 0)
    if not pid or slot.get("state") in ("empty", "starting"):
        return None
    usage = (slot.get("rss_kb"), slot.get("uss_kb"), slot.get("pss_kb"))
    # The service measures each worker; without its numbers (an older service, or a worker it
    # could not read) measure here. The scoreboard's own uss_kb is 0 until a worker nears its
    # memory limit: never a measurement.
    if not all(usage):
        try:
            measured = memory.usage(pid)
        except (psutil.Error, OSError):
            return None  # it died between the two reads
        usage = (measured.rss_kb, measured.uss_kb, measured.pss_kb)
    rss, uss, pss = (int(value or 0) for value in usage)
    if not uss:  # an exiting process (a zombie) has no memory left to measure
        return None
    return Sample(time_s, int(slot.get("index", 0)), pid, rss, uss, pss,
                  int(slot.get("invocations", 0)), str(slot.get("state", "")))


@dataclass
class Sampler:
    """A thread that takes a snapshot every `interval_s` until stopped."""

    read_status: Callable[[], dict[str, Any]]
    started: float  # time.monotonic() of the load's start: time 0 of every sample
    interval_s: float = INTERVAL_S
    on_snapshot: Callable[[Snapshot], None] = lambda snap: None
    snapshots: list[Snapshot] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forkric-soak-sampler",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, after one last snapshot."""
        self._stop.set()
        self._thread.join()
        self.take()

    def take(self) -> Snapshot | None:
        moment = time.monotonic() - self.started
        try:
            taken = snapshot(self.read_status(), moment)
        except (OSError, ValueError, RuntimeError):
            self.errors += 1
            return None
        self.snapshots.append(taken)
        with contextlib.suppress(Exception):
            self.on_snapshot(taken)
        return taken

    def _run(self) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            self.take()
            tick += self.interval_s
            # A slow status read skips ticks rather than bunching samples together.
            while tick < time.monotonic():
                tick += self.interval_s
            self._stop.wait(tick - time.monotonic())
