"""memory.Watch: when a worker reads its USS, fed with scripted readings (no process needed)."""

from __future__ import annotations

from forkric.memory import Watch


class Readings:
    def __init__(self, rss: int, uss: int) -> None:
        self.rss, self.uss, self.now, self.uss_reads = rss, uss, 0.0, 0

    def read_rss(self) -> int:
        return self.rss

    def read_uss(self) -> int:
        self.uss_reads += 1
        return self.uss

    def clock(self) -> float:
        return self.now


def watch(readings: Readings, limit_kb: int) -> Watch:
    return Watch(limit_kb, readings.read_rss, readings.read_uss, readings.clock)


def test_rss_under_the_limit_never_reads_uss() -> None:
    readings = Readings(rss=50_000, uss=10_000)
    w = watch(readings, 100_000)
    assert [w.check(n) for n in range(1, 100)] == [(50_000, None)] * 99
    assert readings.uss_reads == 0


def test_shared_pages_over_the_limit_read_uss_only_while_it_could_cross() -> None:
    # A heavy handler: 250 MB resident, nearly all shared with the supervisor, and no growth.
    readings = Readings(rss=250_000, uss=2_000)
    w = watch(readings, 150_000)
    results = [w.check(n) for n in range(1, 201)]
    assert readings.uss_reads == 2  # twice to learn the growth rate, then never while time stands
    assert all(uss is None for _, uss in results[2:])
    readings.now = Watch.MAX_SKIP_S  # but at least once a second
    assert w.check(201) == (250_000, 2_000)


def test_a_steady_leak_is_caught_on_the_invocation_that_crosses() -> None:
    limit, leak = 150_000, 4_096
    readings = Readings(rss=250_000, uss=1_000)
    w = watch(readings, limit)
    crossed_at = None
    for n in range(1, 100):
        readings.uss = 1_000 + leak * n
        _, uss = w.check(n)
        if uss is not None and uss > limit:
            crossed_at = n
            break
    assert crossed_at is not None
    assert 1_000 + leak * crossed_at <= limit + leak  # caught within one invocation's leak
    assert readings.uss_reads < crossed_at  # and without reading USS after every invocation


def test_a_leak_that_speeds_up_is_caught_within_one_invocation() -> None:
    """Row 13: 16 KB per call, then 4 MB per call once past 105 MB, limit 100 MB: workers were
    recycled at 193 to 453 MB, the USS read skipped on the strength of the slower rate."""
    limit, shared = 100 * 1024, 150 * 1024  # a heavy handler: 150 MB shared, counted in RSS
    readings = Readings(rss=shared + 1_000, uss=1_000)
    w = watch(readings, limit)
    for n in range(1, 100_000):
        step = 16 if readings.uss < 95 * 1024 else 4096  # the leak speeds up near the limit
        readings.uss += step
        readings.rss += step  # new private pages are resident
        _, uss = w.check(n)
        if uss is not None and uss > limit:
            break
    assert uss is not None and uss > limit
    assert readings.uss <= limit + 4096, readings.uss / 1024


def test_shared_pages_turned_private_are_caught_by_the_learned_rate() -> None:
    """Copy-on-write growth does not show in RSS: the rate seen between USS reads covers it."""
    limit = 100_000
    readings = Readings(rss=250_000, uss=1_000)
    w = watch(readings, limit)
    for n in range(1, 1000):
        readings.uss += 500  # written shared pages: private now, RSS unchanged
        _, uss = w.check(n)
        if uss is not None and uss > limit:
            break
    assert readings.uss <= limit + 500 * 2
    assert readings.uss_reads < 100
