"""The leak estimator: private memory (USS) growth per invocation, inside each worker's lifetime.

Why USS against invocations, per lifetime:
- USS is what a worker owns alone. Right after the fork it is near zero (every page is shared
  with the supervisor) and it grows by what the worker allocates, plus the shared pages it
  writes to (copy-on-write). PSS and RSS mix in the supervisor's pages; time mixes in load.
- A recycle or a crash starts a new process from the same frozen image: each pid is a lifetime
  of its own, with its own intercept. Only slopes inside one lifetime mean anything.
- A worker recycled for memory logs its USS after its first invocation and at its recycle: two
  exact points of its lifetime, however short. Under a memory limit a leaky worker may live
  less than a second, between two samples of the sampler: these points are then all there is.

How, robustly:
- Warm-up: the first invocations of a lifetime touch shared pages (copy-on-write) and fill
  caches (imports done lazily, allocator arenas, the first response buffers). The first sample
  of every lifetime, and those before WARMUP_INVOCATIONS invocations, are left out. Only one
  sample: with a memory limit a leaky worker may live three seconds, and measured here a clean
  worker's warm-up growth is under 1 MB, which the median of pairs shrugs off.
- Noise: the allocators grow in steps (pymalloc arenas of 1 MiB on 3.10+, glibc heap and mmap
  thresholds of 128 KiB and more), and a sample's USS and invocation count are read a few
  milliseconds apart. So the slope is a Theil-Sen one: the median of the slopes between every
  pair of samples of the same lifetime, each pair weighted by the invocations between its two
  samples, all lifetimes' pairs pooled. A lifetime thus counts by the invocations it spans (and a
  short lifetime between two recycles still contributes its pairs); one step of an allocator
  moves the median little.

How sure (`confidence`, 0 to 1): the weighted share of those pairs whose USS grew, minus the
share whose USS shrank (Kendall's tau, weighted as above, counted only upwards). A steady leak
makes nearly every later sample higher than every earlier one: close to 1. A clean handler's
USS wanders up and down and plateaus: near 0, however large a step one of them took. Also
given: `r2`, the share of the within-lifetime USS variance a straight line in invocations
explains, and `consistency`, the invocation-weighted share of lifetimes whose own slope is over
the threshold.

When it is suspected: all three of
- `kb_per_invocation` >= MIN_KB_PER_INVOCATION (1 KB): below that, a 30-second run cannot tell
  a leak from the allocators' steps (about 1 MiB over a few thousand invocations per worker is
  already 0.3 KB/invocation of apparent slope); and even a 1 KB/invocation leak is found by a
  longer soak, where the next condition holds;
- the growth the slope predicts over the invocations analysed, per lifetime on average, is at
  least MIN_GROWTH_MB (4 MB, four pymalloc arenas): a slope through less growth than a few
  allocator steps is not evidence;
- `confidence` >= MIN_CONFIDENCE (0.6): most pairs agree that memory grew.

Its trend: lifetimes with MIN_HALF_SAMPLES points in each half (by invocations) give the rate
over their earlier and their later halves. A leak whose later rate is under LEVELLED_OFF of its
earlier one levelled off (a bounded cache filling: 20 MB over 5,000 calls, then flat, was a
"leak" of 1.6 KB per invocation): the later halves alone decide. One whose later rate is over
ACCELERATING times its earlier one is said to accelerate, with its later rate, and its time to
the limit is reckoned at that rate (the mean rate put it 33% too late).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from forkric.soak.logscan import Recycle
from forkric.soak.sampler import Sample

WARMUP_SAMPLES = 1
WARMUP_INVOCATIONS = 20
MAX_SAMPLES_PER_LIFETIME = 400  # thinned evenly beyond: the pairs grow as its square
MIN_SAMPLES = 2  # one pair: a lifetime between two quick recycles still counts
MIN_KB_PER_INVOCATION = 1.0
MIN_GROWTH_MB = 4.0
MIN_CONFIDENCE = 0.6
# "No leak" only from lifetimes that could have shown one of this size: MIN_GROWTH_MB over 1,024
# invocations. Coarser than that, the run is inconclusive.
MAX_RESOLUTION_KB = 4.0
MIN_HALF_SAMPLES = 3
LEVELLED_OFF = 0.5
ACCELERATING = 1.5

LEAK = "leak"
NO_LEAK = "no leak"
INCONCLUSIVE = "inconclusive"


@dataclass
class Lifetime:
    pid: int
    worker: int
    invocations: np.ndarray  # served, at each sample
    uss_kb: np.ndarray

    @property
    def span(self) -> int:
        return int(self.invocations[-1] - self.invocations[0]) if len(self.invocations) else 0


@dataclass
class LifetimeSlope:
    pid: int
    worker: int
    samples: int
    invocations: int
    kb_per_invocation: float


@dataclass
class LeakEstimate:
    suspected: bool
    kb_per_invocation: float
    confidence: float
    r2: float
    consistency: float
    lifetimes: int  # lifetimes with enough samples to be analysed
    invocations_analysed: int
    predicted_growth_mb: float  # the slope times the invocations analysed, per lifetime
    threshold_kb_per_invocation: float = MIN_KB_PER_INVOCATION
    per_lifetime: list[LifetimeSlope] = field(default_factory=list)
    verdict: str = INCONCLUSIVE  # LEAK, NO_LEAK or INCONCLUSIVE
    # The smallest leak the measured lifetimes could show, KB per invocation (inf: none measured)
    resolution_kb_per_invocation: float = float("inf")
    lifetime_invocations: float = 0.0  # what a typical measured lifetime spans
    base_kb: float = 0.0  # USS a lifetime starts from, on the slope's line (at 0 invocations)
    reason: str = ""
    # The rate over the earlier and the later halves of the lifetimes long enough to split
    early_kb_per_invocation: float | None = None
    late_kb_per_invocation: float | None = None
    accelerating: bool = False

    def as_dict(self) -> dict[str, object]:
        found = asdict(self)
        for key in ("kb_per_invocation", "confidence", "r2", "consistency",
                    "predicted_growth_mb", "lifetime_invocations", "base_kb",
                    "early_kb_per_invocation", "late_kb_per_invocation"):
            if found[key] is not None:
                found[key] = round(found[key], 3)
        finest = found["resolution_kb_per_invocation"]
        found["resolution_kb_per_invocation"] = round(finest, 3) if finest < 1e9 else None
        for entry in found["per_lifetime"]:
            entry["kb_per_invocation"] = round(entry["kb_per_invocation"], 3)
        return found


def lifetimes(samples: Iterable[Sample], recycles: Iterable[Recycle] = ()) -> list[Lifetime]:
    """Each pid's points in invocation order: its samples after the warm-up, and, for a worker
    recycled for memory, its USS after its first invocation and at its recycle (the log's)."""
    by_pid: dict[int, list[Sample]] = {}
    for sample in samples:
        by_pid.setdefault(sample.pid, []).append(sample)
    ends = {recycle.pid: recycle for recycle in recycles}
    found = []
    for pid in by_pid.keys() | ends.keys():
        series = sorted(by_pid.get(pid, []), key=lambda s: s.time_s)
        kept = [s for s in series[WARMUP_SAMPLES:] if s.invocations >= WARMUP_INVOCATIONS]
        if len(kept) > MAX_SAMPLES_PER_LIFETIME:
            kept = [kept[i] for i in np.linspace(0, len(kept) - 1, MAX_SAMPLES_PER_LIFETIME,
                                                 dtype=int)]
        points = [(float(s.invocations), float(s.uss_kb)) for s in kept]
        end = ends.get(pid)
        if end is not None:
            points += [(float(end.first_invocations), end.first_uss_kb),
                       (float(end.invocations), end.uss_kb)]
        points.sort()
        worker = series[0].worker if series else end.worker if end else 0
        found.append(Lifetime(pid, worker, np.array([p[0] for p in points]),
                              np.array([p[1] for p in points])))
    return sorted((life for life in found if len(life.invocations) >= MIN_SAMPLES
                   and life.span > 0), key=lambda life: life.pid)


def pairs(life: Lifetime) -> tuple[np.ndarray, np.ndarray]:
    """(slope, weight) of every pair of samples of one lifetime served invocations apart."""
    first, second = np.triu_indices(len(life.invocations), k=1)
    apart = life.invocations[second] - life.invocations[first]
    grown = life.uss_kb[second] - life.uss_kb[first]
    keep = apart > 0
    return grown[keep] / apart[keep], apart[keep]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def within_r2(lives: list[Lifetime], slope: float) -> float:
    """The share of the USS variance inside lifetimes that `slope` explains (each lifetime
    centred on its own means)."""
    residual = total = 0.0
    for life in lives:
        x = life.invocations - life.invocations.mean()
        y = life.uss_kb - life.uss_kb.mean()
        residual += float(np.sum((y - slope * x) ** 2))
        total += float(np.sum(y ** 2))
    return max(0.0, 1.0 - residual / total) if total > 0 else 0.0


def typical_span(lives: list[Lifetime]) -> float:
    """The invocations a measured lifetime spans, each lifetime weighted by its own span: a
    last, cut-short lifetime beside many whole ones changes it little."""
    spans = np.array([life.span for life in lives], dtype=float)
    return float(np.sum(spans ** 2) / np.sum(spans))


def resolution(span: float) -> float:
    """The smallest leak, KB per invocation, that lifetimes spanning `span` invocations could
    show: MIN_GROWTH_MB over the span, and never finer than MIN_KB_PER_INVOCATION."""
    return max(MIN_KB_PER_INVOCATION, MIN_GROWTH_MB * 1024 / span) if span > 0 else float("inf")


def halves(life: Lifetime) -> tuple[Lifetime, Lifetime] | None:
    """The lifetime's points before and from the middle of its invocations, when each half has
    MIN_HALF_SAMPLES of them."""
    later = life.invocations >= (life.invocations[0] + life.invocations[-1]) / 2
    split = tuple(Lifetime(life.pid, life.worker, life.invocations[part], life.uss_kb[part])
                  for part in (~later, later))
    return (split[0], split[1]) if all(len(half.invocations) >= MIN_HALF_SAMPLES
                                       for half in split) else None


def pooled(lives: list[Lifetime]) -> tuple[float, float]:
    """(slope, confidence): the weighted median of every pair's slope, and the weighted share of
    pairs that grew minus the share that shrank."""
    found = [pairs(life) for life in lives]
    slopes = np.concatenate([s for s, _ in found])
    weights = np.concatenate([w for _, w in found])
    if not np.sum(weights):
        return 0.0, 0.0
    slope = weighted_median(slopes, weights)
    return slope, max(0.0, float(np.sum(weights * np.sign(slopes)) / np.sum(weights)))


def estimate(samples: Iterable[Sample], recycles: Iterable[Recycle] = ()) -> LeakEstimate:
    lives = lifetimes(samples, recycles)
    if not lives:
        return LeakEstimate(False, 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0, verdict=INCONCLUSIVE,
                            reason="no worker lifetime spanned two measurements")
    found = [pairs(life) for life in lives]
    slope, confidence = pooled(lives)
    per_life = [LifetimeSlope(life.pid, life.worker, len(life.invocations), life.span,
                              weighted_median(s, w)) for life, (s, w) in zip(lives, found,
                                                                             strict=True)]
    analysed = sum(life.span for life in lives)
    consistency = sum(p.invocations for p in per_life
                      if p.kb_per_invocation >= MIN_KB_PER_INVOCATION) / analysed
    span = typical_span(lives)
    growth_mb = slope * span / 1024
    finest = resolution(span)
    verdict, reason = judge(slope, growth_mb, confidence, span, finest)
    split = [pair for pair in map(halves, lives) if pair is not None]
    early: float | None = None
    late: float | None = None
    accelerating = False
    if split:
        early, late = (pooled([pair[i] for pair in split])[0] for i in (0, 1))
        accelerating = verdict == LEAK and late >= ACCELERATING * max(early, 0.0)
        if verdict == LEAK and late < LEVELLED_OFF * early:
            # Growth that stopped: a cache filling, not a leak. The later halves alone decide.
            later = [pair[1] for pair in split]
            slope, confidence = pooled(later)
            span = typical_span(later)
            growth_mb, finest = slope * span / 1024, resolution(span)
            verdict, reason = judge(slope, growth_mb, confidence, span, finest)
            reason = (f"private memory grew {early:.2f} KB per invocation over the earlier half "
                      f"of the lifetimes, then levelled off; over the later half: {reason}")
    if accelerating:
        reason += (f"; accelerating: {late:.1f} KB per invocation over the later half of the "
                   f"lifetimes, {early:.1f} over the earlier")
    return LeakEstimate(
        suspected=verdict == LEAK, kb_per_invocation=slope, confidence=confidence,
        r2=within_r2(lives, slope), consistency=consistency, lifetimes=len(lives),
        invocations_analysed=analysed, predicted_growth_mb=growth_mb, per_lifetime=per_life,
        verdict=verdict, resolution_kb_per_invocation=finest, lifetime_invocations=span,
        base_kb=float(np.median([np.median(life.uss_kb - slope * life.invocations)
                                 for life in lives])),
        reason=reason, early_kb_per_invocation=early, late_kb_per_invocation=late,
        accelerating=accelerating)


def judge(slope: float, growth_mb: float, confidence: float, span: float,
          finest: float) -> tuple[str, str]:
    """(verdict, why) from the pooled slope, the growth it predicts over a typical lifetime, the
    share of pairs that grew, and the smallest leak those lifetimes could show."""
    grew = slope >= MIN_KB_PER_INVOCATION and confidence >= MIN_CONFIDENCE
    if grew and growth_mb >= MIN_GROWTH_MB:
        return LEAK, (f"private memory grows steadily with invocations ({growth_mb:.1f} MB over "
                      f"a typical lifetime of {span:.0f} invocations)")
    if grew:
        return INCONCLUSIVE, (f"private memory grew {slope:.2f} KB per invocation, but only "
                              f"{growth_mb:.1f} MB over a typical lifetime of {span:.0f} "
                              f"invocations: too little to tell from the allocator's steps "
                              f"(under {MIN_GROWTH_MB:g} MB)")
    if finest > MAX_RESOLUTION_KB:
        return INCONCLUSIVE, (f"a typical lifetime spanned only {span:.0f} invocations: a leak "
                              f"under {finest:.1f} KB per invocation would not have shown")
    if slope >= finest:  # it grew, but the pairs do not agree
        return INCONCLUSIVE, (f"private memory moved {slope:.2f} KB per invocation, but only "
                              f"{confidence:.2f} of the measurements agree it grew")
    return NO_LEAK, (f"no leak of {finest:.1f} KB per invocation or more "
                     f"({slope:.2f} KB measured, lifetimes of {span:.0f} invocations)")
