"""The soak's leak estimator on synthetic series: steady leaks, recycles, warm-up, allocator
steps, outliers, plateaus, and clean workers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from forkric.soak import leak
from forkric.soak.logscan import Recycle
from forkric.soak.sampler import Sample

KB_PER_MB = 1024


def series(pid: int, worker: int, count: int, rate: float, uss: Callable[[int, int], float],
           start_s: float = 0.0, start_invocations: int = 0) -> Iterator[Sample]:
    """`count` samples a second apart; `rate` invocations a second; uss(i, invocations) in KB."""
    for i in range(count):
        served = start_invocations + int(i * rate)
        yield Sample(start_s + i, worker, pid, 20_000, int(uss(i, served)), 8_000, served, "busy")


def leaking(kb_per_invocation: float, noise_kb: float = 0.0, seed: int = 1
            ) -> Callable[[int, int], float]:
    rng = random.Random(seed)
    return lambda i, served: 4_000 + kb_per_invocation * served + rng.uniform(-noise_kb, noise_kb)


def within(found: float, truth: float, share: float) -> bool:
    return abs(found - truth) <= share * truth


def test_a_steady_leak_is_found_at_its_rate() -> None:
    samples = [*series(10, 0, 30, 300, leaking(64, noise_kb=500, seed=1)),
               *series(11, 1, 30, 280, leaking(64, noise_kb=500, seed=2))]
    found = leak.estimate(samples)
    assert found.suspected
    assert within(found.kb_per_invocation, 64, 0.05)
    assert found.confidence > 0.9 and found.r2 > 0.9 and found.consistency == 1.0
    assert found.lifetimes == 2


def test_recycled_lifetimes_each_restart_from_their_own_base() -> None:
    # A 64 KB leak under a memory limit: four-second lifetimes, each starting again near zero.
    samples: list[Sample] = []
    for life in range(6):
        samples += series(100 + life, life % 2, 4, 250, leaking(64, noise_kb=200, seed=life),
                          start_s=life * 4)
    found = leak.estimate(samples)
    assert found.suspected
    assert within(found.kb_per_invocation, 64, 0.10)
    assert found.lifetimes == 6


def test_pooling_lifetimes_would_be_wrong_and_is_not_done() -> None:
    # Sawtooth: across lifetimes memory does not grow at all; inside each it grows fast.
    samples: list[Sample] = []
    served = 0
    for life in range(5):
        samples += series(200 + life, 0, 5, 100, lambda i, s, base=served: 4_000 + 32 * (s - base),
                          start_s=life * 5, start_invocations=served)
        served += 500
    assert within(leak.estimate(samples).kb_per_invocation, 32, 0.05)


def test_a_clean_worker_is_not_flagged_despite_allocator_steps() -> None:
    rng = random.Random(7)
    steps = {i: rng.choice((-1, 1)) * 1024 for i in rng.sample(range(3, 30), 6)}
    level = [4_000.0]

    def uss(i: int, served: int) -> float:
        level[0] += steps.get(i, 0)
        return level[0] + rng.uniform(-300, 300)

    found = leak.estimate([*series(1, 0, 30, 300, uss), *series(2, 1, 30, 300, leaking(0, 300))])
    assert not found.suspected
    assert abs(found.kb_per_invocation) < leak.MIN_KB_PER_INVOCATION


def test_warm_up_is_left_out() -> None:
    # Copy-on-write right after the fork: +30 MB by the first sample, flat afterwards.
    def uss(i: int, served: int) -> float:
        return 4_000 + (30 * KB_PER_MB if i >= 1 else 0)

    found = leak.estimate(list(series(1, 0, 20, 300, uss)))
    assert not found.suspected
    assert found.kb_per_invocation == pytest.approx(0.0, abs=0.01)


def test_a_plateau_like_a_filling_cache_is_not_a_leak() -> None:
    # As measured on a clean handler: about 400 KB over the first 2000 invocations, then flat.
    def uss(i: int, served: int) -> float:
        return 4_000 + 400 * min(served, 2_000) / 2_000

    found = leak.estimate(list(series(1, 0, 30, 230, uss)))
    assert not found.suspected
    assert found.kb_per_invocation < leak.MIN_KB_PER_INVOCATION


def test_one_outlier_moves_the_estimate_little() -> None:
    def uss(i: int, served: int) -> float:
        return 4_000 + 16 * served + (200 * KB_PER_MB if i == 12 else 0)

    found = leak.estimate(list(series(1, 0, 25, 300, uss)))
    assert within(found.kb_per_invocation, 16, 0.10)
    assert found.suspected


def test_a_small_slope_is_under_the_threshold() -> None:
    found = leak.estimate(list(series(1, 0, 30, 300, leaking(0.5, noise_kb=50))))
    assert found.kb_per_invocation == pytest.approx(0.5, rel=0.1)
    assert not found.suspected
    assert found.verdict == leak.NO_LEAK
    assert found.resolution_kb_per_invocation == leak.MIN_KB_PER_INVOCATION
    assert "no leak of 1.0 KB per invocation or more" in found.reason


def test_too_little_growth_is_not_evidence() -> None:
    # A real 2 KB/invocation slope over only 600 invocations: 1.2 MB, within allocator noise.
    found = leak.estimate(list(series(1, 0, 7, 100, leaking(2))))
    assert found.kb_per_invocation == pytest.approx(2, rel=0.05)
    assert not found.suspected
    assert found.verdict == leak.INCONCLUSIVE  # it grew, too little to be sure: never "no leak"
    assert "too little to tell" in found.reason


def test_no_usable_samples() -> None:
    found = leak.estimate([Sample(0.0, 0, 1, 1, 1, 1, 0, "idle")])
    assert not found.suspected
    assert found.lifetimes == 0
    assert found.verdict == leak.INCONCLUSIVE
    assert "no worker lifetime spanned two measurements" in found.reason


def test_idle_workers_are_left_out() -> None:
    # A worker that served nothing during the run gives no pair of samples.
    idle = [Sample(float(i), 1, 2, 1, 4_000 + i * 100, 1, 50, "idle") for i in range(10)]
    found = leak.estimate([*series(1, 0, 20, 300, leaking(64)), *idle])
    assert found.lifetimes == 1
    assert within(found.kb_per_invocation, 64, 0.02)


def test_weighted_median() -> None:
    values = np.array([1.0, 2.0, 100.0])
    assert leak.weighted_median(values, np.array([1.0, 1.0, 1.0])) == 2.0
    assert leak.weighted_median(values, np.array([1.0, 1.0, 10.0])) == 100.0


def test_long_lifetimes_are_thinned() -> None:
    samples = list(series(1, 0, 1_500, 10, leaking(8)))
    (life,) = leak.lifetimes(samples)
    assert len(life.invocations) == leak.MAX_SAMPLES_PER_LIFETIME
    assert within(leak.estimate(samples).kb_per_invocation, 8, 0.01)


def test_report_form_is_plain_json_data() -> None:
    found = leak.estimate(list(series(1, 0, 10, 300, leaking(64)))).as_dict()
    assert set(found) >= {"suspected", "kb_per_invocation", "confidence", "r2", "per_lifetime"}
    assert isinstance(found["per_lifetime"], list)


def recycled(pid: int, invocations: int, kb_per_invocation: float, first_uss_kb: float = 4_000,
             worker: int = 0) -> Recycle:
    """A worker recycled for memory, as its log line tells it."""
    return Recycle(pid, worker, invocations, first_uss_kb + kb_per_invocation * (invocations - 1),
                   1, first_uss_kb)


def test_lifetimes_too_short_to_sample_are_measured_from_their_recycles() -> None:
    # A fast machine: each worker reaches its limit in under a second, between two samples. The
    # sampler saw each lifetime once at most; the recycle lines alone give the rate.
    recycles = [recycled(300 + i, 1_205, 64, worker=i % 2) for i in range(12)]
    glimpses = [Sample(float(i), i % 2, 300 + i, 40_000, 30_000, 20_000, 400, "busy")
                for i in range(0, 12, 3)]
    assert leak.estimate(glimpses).lifetimes == 0  # what the samples alone could tell
    found = leak.estimate(glimpses, recycles)
    assert found.suspected
    assert within(found.kb_per_invocation, 64, 0.01)
    assert found.lifetimes == 12 and found.confidence == 1.0


def test_a_recycle_joins_the_samples_of_its_own_lifetime() -> None:
    samples = list(series(7, 0, 5, 200, leaking(32, noise_kb=100)))
    end = recycled(7, 1_000, 32)
    (life,) = leak.lifetimes(samples, [end])
    assert life.invocations[0] == 1 and life.invocations[-1] == 1_000
    assert len(life.invocations) == 5 - leak.WARMUP_SAMPLES + 2
    assert within(leak.estimate(samples, [end]).kb_per_invocation, 32, 0.05)


def test_recycles_after_one_invocation_give_no_rate() -> None:
    found = leak.estimate([], [recycled(400 + i, 1, 0, first_uss_kb=3_000) for i in range(5)])
    assert found.verdict == leak.INCONCLUSIVE and found.lifetimes == 0


def test_short_clean_lifetimes_are_inconclusive_not_clean() -> None:
    # Flat memory, but each lifetime measured over 300 invocations only: a 10 KB leak would
    # have grown 3 MB there, within the allocator's steps.
    found = leak.estimate(list(series(1, 0, 5, 100, leaking(0, noise_kb=100))))
    assert found.verdict == leak.INCONCLUSIVE
    assert found.resolution_kb_per_invocation > leak.MAX_RESOLUTION_KB
    assert "would not have shown" in found.reason


def test_a_clean_run_says_what_it_could_have_seen() -> None:
    found = leak.estimate(list(series(1, 0, 20, 150, leaking(0, noise_kb=300))))
    assert found.verdict == leak.NO_LEAK
    assert 1.0 < found.resolution_kb_per_invocation < 2.0  # 4 MB over about 2,700 invocations
    assert found.as_dict()["resolution_kb_per_invocation"] == pytest.approx(
        found.resolution_kb_per_invocation, abs=0.001)


def test_typical_span_weighs_lifetimes_by_their_span() -> None:
    def life(span: int) -> leak.Lifetime:
        return leak.Lifetime(1, 0, np.array([0.0, span]), np.array([0.0, 0.0]))

    assert leak.typical_span([life(1_000)] * 9 + [life(100)]) == pytest.approx(
        (9 * 1_000 ** 2 + 100 ** 2) / 9_100)


def test_a_bounded_cache_that_fills_then_levels_off_is_not_a_leak() -> None:
    # A cache of 5,000 entries of 4 KB (20 MB) filled by the first 5,000 calls, then flat: the
    # pooled slope alone said "leak, 1.6 KB per invocation" over 30 s of a clean handler.
    def uss(i: int, served: int) -> float:
        return 4_000 + 20_480 * min(served, 5_000) / 5_000

    found = leak.estimate([*series(1, 0, 31, 370, uss), *series(2, 1, 31, 380, uss)])
    assert found.verdict == leak.NO_LEAK, found.reason
    assert found.early_kb_per_invocation is not None and found.early_kb_per_invocation > 3
    assert found.late_kb_per_invocation == pytest.approx(0.0, abs=0.1)
    assert "then levelled off" in found.reason


def test_an_accelerating_leak_gives_its_later_rate() -> None:
    # Call n keeps n/100 KB: 58 KB per invocation on average over 11,500 calls, 115 at the end.
    def uss(i: int, served: int) -> float:
        return 4_000 + served ** 2 / 200

    found = leak.estimate([*series(1, 0, 31, 370, uss), *series(2, 1, 31, 380, uss)])
    assert found.verdict == leak.LEAK and found.accelerating
    assert found.late_kb_per_invocation is not None and found.early_kb_per_invocation is not None
    assert found.late_kb_per_invocation > 2 * found.early_kb_per_invocation
    assert "accelerating" in found.reason


def test_a_steady_leak_neither_accelerates_nor_levels_off() -> None:
    samples = [*series(10, 0, 30, 300, leaking(16, noise_kb=1_000, seed=3)),
               *series(11, 1, 30, 280, leaking(16, noise_kb=1_000, seed=4))]
    found = leak.estimate(samples)
    assert found.verdict == leak.LEAK and not found.accelerating
    assert found.late_kb_per_invocation == pytest.approx(16, rel=0.1)
