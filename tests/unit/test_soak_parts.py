"""The soak's parts that need no process: the runtime's log read, the samples marked, Locust's
numbers read, the progress line, the summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

from forkric.soak import load, logscan, progress, report, verdict
from forkric.soak.leak import estimate
from forkric.soak.sampler import Sample, Snapshot, snapshot
from tests.unit.test_soak_verdict import facts

LOG = """\
[INFO]\t2026-01-01T00:00:00.000Z\t\tforkric: supervisor 10 starting 2 worker(s) for app.handler
[WARNING]\t2026-01-01T00:00:01.000Z\tid-1\tforkric: leak site: /task/app.py:19: size=24.8 MiB \
(+24.8 MiB), count=398 (+398), average=63.9 KiB
[WARNING]\t2026-01-01T00:00:01.000Z\tid-1\tforkric: leak site: /task/lib.py:7: size=77.5 KiB \
(+77.5 KiB), count=397 (+397), average=200 B
[WARNING]\t2026-01-01T00:00:01.000Z\tid-1\tforkric: leak site: /task/gone.py:3: size=0 B \
(-1.0 KiB), count=0 (-3), average=0 B
[WARNING]\t2026-01-01T00:00:01.000Z\tid-1\tforkric: recycling worker 0 (pid 11): private \
memory 80.1 MB over the 80 MB limit after 1250 invocations
[WARNING]\t2026-01-01T00:00:02.000Z\tid-2\tforkric: leak site: /task/app.py:19: size=30.0 MiB \
(+30.0 MiB), count=480 (+480), average=64.0 KiB
[ERROR]\t2026-01-01T00:00:03.000Z\t\tforkric: worker 1 (pid 12) died (signal: killed) during \
id-3; peak RSS 17 MB; reporting Runtime.ExitError and starting another
[ERROR]\t2026-01-01T00:00:04.000Z\t\tforkric: worker 1 (pid 13) is 2.0 s past the deadline of \
id-4; its stack follows, then it is killed and replaced
"""


def test_lifetime_ends_from_the_log() -> None:
    assert logscan.lifetime_ends(LOG) == {11: "recycle", 12: "crash", 13: "kill"}


def test_leak_sites_most_growth_first_shrinking_ones_left_out() -> None:
    sites = logscan.leak_sites(LOG)
    assert [s.site for s in sites] == ["/task/app.py:19", "/task/lib.py:7"]
    assert sites[0].workers == 2
    assert sites[0].growth_kb == 30 * 1024
    assert sites[0].as_dict()["growth_mb"] == 30.0


def test_units() -> None:
    assert logscan.to_kb("2048 B") == 2.0
    assert logscan.to_kb("1.5 MiB") == 1536.0


def _snap(time_s: float, *samples: Sample, recycles: int = 0, start: int = 1) -> Snapshot:
    return Snapshot(time_s, samples, {"recycles": recycles, "crashes": 0, "kills": 0,
                                      "spawns": 0}, start, 0, 0)


def _sample(time_s: float, worker: int, pid: int, uss_kb: int = 1024) -> Sample:
    return Sample(time_s, worker, pid, 2048, uss_kb, 1536, int(time_s * 100), "idle")


def test_samples_are_marked_with_starts_and_ends() -> None:
    snaps = [_snap(0, _sample(0, 0, 11), _sample(0, 1, 12)),
             _snap(1, _sample(1, 0, 11), _sample(1, 1, 12)),
             _snap(2, _sample(2, 0, 21), _sample(2, 1, 12), recycles=1)]
    marked = report.mark(snaps, {11: "recycle"})
    events = [(m.sample.pid, m.sample.time_s, m.event) for m in marked]
    assert (11, 0, "start") in events and (11, 1, "recycle") in events
    assert (21, 2, "start") in events
    assert (12, 2, "") in events  # still alive at the end: no end marked


def test_csv_and_counters(tmp_path: Path) -> None:
    snaps = [_snap(0, _sample(0, 0, 11)), _snap(1, _sample(1, 0, 11), recycles=2),
             _snap(2, _sample(2, 0, 31), recycles=1, start=2)]  # a new runtime: counted anew
    assert report.counter_totals(snaps)["recycles"] == 3
    report.write_csv(tmp_path / "memory.csv", report.mark(snaps, {}))
    lines = (tmp_path / "memory.csv").read_text().splitlines()
    assert lines[0] == ",".join(report.CSV_COLUMNS)
    assert lines[1] == "0.000,0,11,2.0,1.0,1.5,0,start"
    assert report.peaks(snaps) == {"peak_worker_uss_mb": 1.0, "peak_total_pss_mb": 1.5,
                                   "peak_total_uss_mb": 1.0}


def test_snapshot_from_the_status_document() -> None:
    status = {
        "invocations": {"accepted": 9, "rejected": 1, "succeeded": 5, "function_errors": 2,
                        "timeouts": 1},
        "runtime": {"starts": 1},
        "workers": {"recycles": 2, "crashes": 1, "kills": 0, "spawns": 5, "slots": [
            {"index": 0, "pid": 41, "state": "busy", "invocations": 7, "rss_kb": 30_000,
             "uss_kb": 5_000, "pss_kb": 9_000},
            {"index": 1, "pid": 42, "state": "starting", "invocations": 0}]},
    }
    snap = snapshot(status, 3.0)
    assert snap.samples == (Sample(3.0, 0, 41, 30_000, 5_000, 9_000, 7, "busy"),)
    assert snap.served == 8 and snap.failed == 3
    assert snap.counters["recycles"] == 2


def test_locust_numbers(tmp_path: Path) -> None:
    path = tmp_path / "locust.json"
    latency = {"p50": 3, "p90": 8, "p99": 20, "max": 41.5}
    path.write_text(json.dumps({
        "total": {"name": "Aggregated", "requests": 120, "failures": 7, "requests_per_s": 40.04,
                  "latency_ms": latency},
        "entries": [{"name": "invoke", "requests": 115, "failures": 2},
                    {"name": "function error: ValueError", "requests": 5, "failures": 5}],
        "errors": [{"name": "invoke", "error": "HTTP 429: TooManyRequestsException",
                    "occurrences": 2},
                   {"name": "function error: ValueError", "error": "X-Amz-Function-Error",
                    "occurrences": 5}]}))
    found = load.read_result(path)
    assert (found.invocations, found.failures, found.function_errors) == (120, 7, 5)
    assert found.failures_by_error == {"function error: ValueError": 5,
                                       "invoke: HTTP 429: TooManyRequestsException": 2}
    assert found.latency_ms == latency and found.requests_per_s == 40.0
    assert load.read_result(tmp_path / "missing.json").invocations == 0


def test_progress_plain_lines_every_few_seconds() -> None:
    out = io.StringIO()
    line = progress.Progress(30, out)
    for second in range(12):
        line.update(Snapshot(float(second), (_sample(second, 0, 11),), {}, 1, second * 100, 1),
                    recycles=2)
    line.done()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 0, 5 and 10 s
    assert lines[-1].split() == ["forkric", "soak:", "10/30", "s", "100.0", "inv/s", "1",
                                 "failed", "workers", "1.5", "MB", "PSS", "2", "recycled"]


def test_summary_reads_at_a_glance(tmp_path: Path) -> None:
    samples = [_sample(t, 0, 11, uss_kb=4000 + 64 * t * 100) for t in range(30)]
    found = estimate(samples)
    decided = verdict.decide(found, facts(limit_mb=1024.0, safety_limit=True, elapsed_s=29.6,
                                          workers=1, invocations=3000))
    settings = {"handler": "app.handler", "duration_s": 30.0, "elapsed_s": 29.6, "users": 4,
                "workers": 1, "max_worker_memory_mb": 0.0, "memory_limit_mb": 1024.0,
                "safety_limit": True, "event": "{}"}
    document = report.build(settings, load.LoadResult(invocations=3000, latency_ms={
        "p50": 2.0, "p90": 4.0, "p99": 9.0, "max": 30.0}),
        [_snap(t, s) for t, s in enumerate(samples)], found, decided, [])
    text = report.summary(document, decided.headline(found), tmp_path)
    assert "29.6 s of load (30 s asked)" in text and "1024 MB limit (safety)" in text
    assert "LEAK: 64.0 KB per invocation" in text
    # 1,024 MB from about 4 MB, at 64 KB a call and 101 calls a second.
    assert "reaches the soak's safety limit of 1024 MB after 16,322 invocations (161.0 s" in text
    assert "3000 invocations" in text and "p99 9 ms" in text
    assert document["leak_sites"] == [] and document["verdict"] == "leak"
    assert document["exit_status"] == verdict.EXIT_LEAK


def test_a_worker_that_cannot_be_measured_gives_no_sample() -> None:
    # Gone before the read: the scoreboard's own uss_kb (0 far from the limit) is not used.
    slot = {"index": 0, "pid": 2**22 + 17, "state": "exiting", "invocations": 9,
            "rss_kb": 30_000, "uss_kb": 0}
    assert snapshot({"workers": {"slots": [slot]}}, 1.0).samples == ()


def test_memory_recycles_from_the_log() -> None:
    line = ("[WARNING]\t2026-01-01T00:00:05.000Z\tid-9\tforkric: recycling worker 1 (pid 14): "
            "private memory 80.0 MB over the 80 MB limit after 1207 invocations (4.1 MB after 1)\n"
            "[WARNING]\t2026-01-01T00:00:06.000Z\tid-9\tforkric: recycling worker 0 (pid 15): "
            "served 100 invocations (--max-requests)\n")
    assert logscan.memory_recycles(LOG + line) == [
        logscan.Recycle(11, 0, 1250, 80.1 * 1024, 0, 0.0),  # an older runtime's line
        logscan.Recycle(14, 1, 1207, 80.0 * 1024, 1, 4.1 * 1024)]
