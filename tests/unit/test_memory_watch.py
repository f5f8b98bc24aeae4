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
