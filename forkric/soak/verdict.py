"""The soak's verdict: leak, no leak or inconclusive, its exit status, and what to change when
the run could not tell.

The estimate (leak.py) says what the memory did; this module adds what the run was: the limit
in force, how long the load really ran, what failed, how the workers were recycled. "Could not
measure" is never "no leak": a CI gate reading the exit status must not pass what was not seen.

Exit statuses: 0 no leak, 3 leak, 4 inconclusive, 5 invocations failed (and no leak found);
1 is left to a soak that could not run at all, 2 to a bad command line. A run stopped before
its --duration is never a pass: a leak already proven keeps 3 and failures 5; otherwise it is
inconclusive, with the shell's 128 + the signal's number when a signal stopped it (130 for
Ctrl-C, 143 for SIGTERM: a CI job cancelled is told from a run too short to tell), else 4.
"""

from __future__ import annotations

import signal
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from forkric.soak import leak
from forkric.soak.logscan import Recycle

EXIT_NO_LEAK = 0
EXIT_LEAK = 3
EXIT_INCONCLUSIVE = 4
EXIT_INVOCATIONS_FAILED = 5
EXIT_SIGNAL_BASE = 128  # the shell's convention: 128 + the signal's number
# A worker recycled within this many invocations was recycled by its first calls alone.
QUICK_RECYCLE_INVOCATIONS = 2
# Recycles for memory more often than once per leak.WARMUP_INVOCATIONS invocations make leak
# measurement meaningless: the estimator calls a lifetime's first 20 invocations warm-up (pages
# copied on write, lazy caches, allocator arenas) because growth there is the working set being
# built, not a leak; a lifetime that short is all warm-up. A bounded cache of 16 x 4 MB under a
# 24 MB limit, recycled every 6 invocations, was a "leak" of 4,137 KB per invocation. The
# leaks a soak exists for recycle far less often: 400 KB per call under 80 MB, every 190.
MIN_RECYCLES = 3  # a judgement on the limit from fewer recycles could be a fluke
WARM_UP_S = 5.0  # Locust's start and each lifetime's first sample, left out of the estimate


@dataclass(frozen=True)
class Run:
    """What the run was, beside what the memory did."""

    limit_mb: float  # the per-worker memory limit in force: the user's, or the soak's safety one
    safety_limit: bool  # True when the user gave none and the soak set one
    duration_s: float  # asked
    elapsed_s: float  # how long the load really ran
    workers: int
    invocations: int
    failures: int
    failures_by_error: dict[str, int]
    memory_recycles: Sequence[Recycle] = ()
    interrupted: bool = False  # the load stopped before the duration asked
    signal: int = 0  # the signal that stopped it (SIGINT, SIGTERM), 0 for none


@dataclass
class Verdict:
    outcome: str  # leak.LEAK, leak.NO_LEAK or leak.INCONCLUSIVE: what the memory says
    status: int  # the exit status
    why: str
    advice: str = ""  # what to change for a verdict, when there is none
    # For a leak: when a worker reaches the limit in force, from its first invocation.
    invocations_to_limit: float | None = None
    seconds_to_limit: float | None = None
    limit: str = ""  # the limit in force, in words
    warnings: list[str] = field(default_factory=list)
    interrupted: str = ""  # what stopped the run early, in words ("" when it ran its duration)

    def as_dict(self) -> dict[str, object]:
        found = asdict(self)
        for key in ("invocations_to_limit", "seconds_to_limit"):
            if found[key] is not None:
                found[key] = round(found[key], 1)
        return found

    def headline(self, estimate: leak.LeakEstimate) -> str:
        if self.outcome == leak.LEAK:
            text = (f"LEAK: {estimate.kb_per_invocation:.1f} KB per invocation (confidence "
                    f"{estimate.confidence:.2f}, {estimate.lifetimes} worker lifetime(s))")
            if estimate.accelerating:
                text += (f", accelerating: {estimate.late_kb_per_invocation:.1f} KB per "
                         f"invocation over the later half of the lifetimes")
            if self.invocations_to_limit is not None:
                text += (f"; a worker reaches the {self.limit} after "
                         f"{self.invocations_to_limit:,.0f} invocations")
                if self.seconds_to_limit is not None:
                    text += f" ({self.seconds_to_limit:.1f} s at this load)"
            return text
        if self.interrupted:  # and no leak proven
            return f"INTERRUPTED: {self.why}"
        if self.outcome == leak.NO_LEAK:
            return f"NO LEAK: {self.why}"
        return f"INCONCLUSIVE: {self.why}" + (f". To decide: {self.advice}" if self.advice
                                              else "")


def limit_text(run: Run) -> str:
    if not run.limit_mb:
        return ""
    return (f"soak's safety limit of {run.limit_mb:g} MB" if run.safety_limit
            else f"--max-worker-memory {run.limit_mb:g} MB limit")


def limit_flag(run: Run) -> str:
    return "--safety-limit" if run.safety_limit else "--max-worker-memory"


def decide(estimate: leak.LeakEstimate, run: Run) -> Verdict:
    verdict = Verdict(estimate.verdict, EXIT_NO_LEAK, estimate.reason, limit=limit_text(run),
                      warnings=warnings(run))
    every = recycled_every(run.invocations, run.memory_recycles)
    if every is not None:  # whatever the estimate says, it measured warm-ups
        verdict.outcome, verdict.status = leak.INCONCLUSIVE, EXIT_INCONCLUSIVE
        verdict.why = (f"workers were recycled for memory every {every:.1f} invocations, "
                       f"within the first {leak.WARMUP_INVOCATIONS} of a lifetime that are "
                       f"warm-up: their growth is the working set, not a leak")
        verdict.advice = advice(estimate, run)
    elif estimate.verdict == leak.LEAK:
        verdict.status = EXIT_LEAK
        verdict.invocations_to_limit, verdict.seconds_to_limit = time_to_limit(estimate, run)
    elif estimate.verdict == leak.INCONCLUSIVE:
        verdict.status = EXIT_INCONCLUSIVE
        verdict.advice = advice(estimate, run)
    if run.interrupted:
        verdict.interrupted = (f"by {signal.Signals(run.signal).name}" if run.signal
                               else "(the load stopped early)")
        if verdict.status != EXIT_LEAK:
            stopped(verdict, estimate, run)
    if run.failures and verdict.status != EXIT_LEAK:
        verdict.status = EXIT_INVOCATIONS_FAILED
    return verdict


def stopped(verdict: Verdict, estimate: leak.LeakEstimate, run: Run) -> None:
    """An early stop with no leak proven: inconclusive whatever the partial measurement says
    (a CI gate must not pass a soak cancelled part-way), the status telling a signal."""
    verdict.outcome = leak.INCONCLUSIVE
    verdict.status = EXIT_SIGNAL_BASE + run.signal if run.signal else EXIT_INCONCLUSIVE
    verdict.why = (f"stopped {verdict.interrupted} after {run.elapsed_s:.1f} s of the "
                   f"{run.duration_s:g} s asked, so no verdict; what ran: {estimate.reason}")
    verdict.advice = f"run the whole --duration {run.duration_s:g}"


def per_worker_rate(run: Run) -> float:
    """Invocations a second, per worker, over the load."""
    if run.elapsed_s <= 0 or run.workers <= 0:
        return 0.0
    return run.invocations / run.elapsed_s / run.workers


def first_uss_kb(run: Run) -> float:
    """A worker's private memory after its first invocation, as its recycles logged it (0 when
    none did)."""
    known = [r.first_uss_kb for r in run.memory_recycles if r.first_invocations]
    return statistics.median(known) if known else 0.0


def recycle_uss_kb(recycles: Sequence[Recycle]) -> float:
    """A worker's private memory when it was recycled (the median; 0 for no recycle)."""
    return statistics.median(r.uss_kb for r in recycles) if recycles else 0.0


def recycled_every(invocations: int, recycles: Sequence[Recycle]) -> float | None:
    """Invocations per recycle for memory when that is within a lifetime's warm-up
    (leak.WARMUP_INVOCATIONS), from MIN_RECYCLES recycles on; None otherwise."""
    if len(recycles) < MIN_RECYCLES:
        return None
    every = invocations / len(recycles)
    return every if every < leak.WARMUP_INVOCATIONS else None


def time_to_limit(estimate: leak.LeakEstimate, run: Run) -> tuple[float | None, float | None]:
    """(invocations, seconds) a worker takes to grow from its first invocation to the limit; for
    an accelerating leak at its later rate (a little early, where the mean rate was late)."""
    rate_kb = estimate.kb_per_invocation
    if estimate.accelerating and estimate.late_kb_per_invocation:
        rate_kb = estimate.late_kb_per_invocation
    if not run.limit_mb or rate_kb <= 0:
        return None, None
    base = first_uss_kb(run) or estimate.base_kb
    invocations = max(0.0, run.limit_mb * 1024 - base) / rate_kb
    rate = per_worker_rate(run)
    return invocations, (invocations / rate if rate else None)


def quick_recycles(run: Run) -> int:
    return sum(1 for r in run.memory_recycles if r.invocations <= QUICK_RECYCLE_INVOCATIONS)


def advice(estimate: leak.LeakEstimate, run: Run) -> str:
    """What would let the same soak reach a verdict."""
    recycles = list(run.memory_recycles)
    if recycles and quick_recycles(run) * 2 >= len(recycles):
        return (f"raise {limit_flag(run)}: at {run.limit_mb:g} MB workers were recycled "
                f"after {QUICK_RECYCLE_INVOCATIONS} invocations or fewer "
                f"({quick_recycles(run)} of {len(recycles)} recycles), so no lifetime could be "
                f"measured")
    if recycled_every(run.invocations, recycles) is not None:
        return (f"raise {limit_flag(run)} above the handler's working set (at "
                f"{run.limit_mb:g} MB workers held {recycle_uss_kb(recycles) / 1024:.1f} MB "
                f"when recycled)")
    # Lifetimes long enough to resolve MAX_RESOLUTION_KB, or the growth the slope needs.
    wanted = leak.MIN_GROWTH_MB * 1024 / leak.MAX_RESOLUTION_KB
    if estimate.kb_per_invocation >= leak.MIN_KB_PER_INVOCATION:
        wanted = max(wanted, leak.MIN_GROWTH_MB * 1024 / estimate.kb_per_invocation)
    rate = per_worker_rate(run)
    if recycles and len(recycles) >= run.workers:
        typical = statistics.median(r.invocations for r in recycles)
        return (f"raise --max-worker-memory above {run.limit_mb:g} MB: its recycles cut "
                f"lifetimes to about {typical:,.0f} invocations, and {wanted:,.0f} are needed")
    if rate > 0:
        suggested = max(2 * run.duration_s, 1.5 * wanted / rate + WARM_UP_S)
        return (f"run longer: --duration {suggested:.0f} or more (a worker served {rate:.0f} "
                f"invocations a second; lifetimes of {wanted:,.0f} invocations are needed)")
    return "run longer (--duration): no invocation was served"


def warnings(run: Run) -> list[str]:
    """What the person should know about the run itself, whatever the verdict."""
    found = []
    if run.interrupted:
        how = f" by {signal.Signals(run.signal).name}" if run.signal else ""
        found.append(f"stopped early{how}: {run.elapsed_s:.1f} s of the {run.duration_s:g} s "
                     f"asked")
    if run.failures:
        kinds = ", ".join(f"{name}: {count}" for name, count in
                          sorted(run.failures_by_error.items(), key=lambda kv: -kv[1]))
        found.append(f"{run.failures} of {run.invocations} invocations failed"
                     + (f" ({kinds})" if kinds else ""))
    recycles = list(run.memory_recycles)
    limit = limit_warning(run.limit_mb, run.safety_limit, run.invocations, recycles)
    if limit:
        found.append(limit)
    if recycles and run.safety_limit:
        found.append(f"workers reached the soak's safety limit of {run.limit_mb:g} MB "
                     f"(no --max-worker-memory given) and were recycled there")
    return found


def limit_warning(limit_mb: float, safety: bool, invocations: int,
                  recycles: Sequence[Recycle]) -> str:
    """The one line for a limit below what the handler needs ('' when it is not): workers
    recycled by their first calls (`too_low`), or on average within their warm-up."""
    if not recycles:
        return ""
    facts = Run(limit_mb=limit_mb, safety_limit=safety, duration_s=0.0, elapsed_s=0.0,
                workers=0, invocations=invocations, failures=0, failures_by_error={},
                memory_recycles=recycles)
    if quick_recycles(facts) * 2 >= len(recycles):
        return too_low(limit_mb, first_uss_kb(facts), limit_flag(facts))
    every = recycled_every(invocations, recycles)
    if every is None:
        return ""
    return (f"workers were recycled for memory every {every:.1f} invocations ({len(recycles)} "
            f"recycles in {invocations} invocations): the {limit_text(facts)} is below the "
            f"handler's working set (a worker held {first_uss_kb(facts) / 1024:.1f} MB after "
            f"its first invocation, {recycle_uss_kb(recycles) / 1024:.1f} MB when recycled), "
            f"so leak measurement is meaningless and the verdict inconclusive; raise "
            f"{limit_flag(facts)}")


def too_low(limit_mb: float, first_kb: float, flag: str = "--max-worker-memory") -> str:
    """The warning for a limit that recycles workers on nearly every call (`--max-worker-memory
    2`, meant as 2 GB)."""
    text = (f"{flag} {limit_mb:g} MB recycles workers on nearly every invocation: "
            f"it is below what one invocation needs")
    if first_kb:
        text += f" (a worker's private memory after its first one: {first_kb / 1024:.1f} MB)"
    if limit_mb < 64:
        text += f"; the unit is MB: did you mean {limit_mb * 1024:g}?"
    return text
