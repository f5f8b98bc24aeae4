"""The soak's files and its summary: memory.csv (every sample), report.json (the numbers and
the leak verdict), and the few lines a person reads at the end."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkric.soak.leak import LeakEstimate
from forkric.soak.load import LoadResult
from forkric.soak.logscan import LeakSite
from forkric.soak.sampler import COUNTERS, Sample, Snapshot
from forkric.soak.verdict import Verdict

CSV_COLUMNS = ("time_s", "worker", "pid", "rss_mb", "uss_mb", "pss_mb", "invocations", "event")


@dataclass(frozen=True)
class Marked:
    """A sample and what happened to its worker there: 'start', 'recycle', 'crash', 'kill',
    'exit' (ended otherwise, or unknown), or ''."""

    sample: Sample
    event: str


def samples(snapshots: Iterable[Snapshot]) -> list[Sample]:
    return [sample for snap in snapshots for sample in snap.samples]


def mark(snapshots: list[Snapshot], ends: dict[int, str]) -> list[Marked]:
    """Mark each pid's first sample 'start' and, when it ended before the run did, its last
    one with how it ended."""
    every = samples(snapshots)
    final = {s.pid for s in snapshots[-1].samples} if snapshots else set()
    first: dict[int, Sample] = {}
    last: dict[int, Sample] = {}
    for sample in every:
        first.setdefault(sample.pid, sample)
        last[sample.pid] = sample
    marked = []
    for sample in every:
        event = ""
        if last[sample.pid] is sample and sample.pid not in final:
            event = ends.get(sample.pid, "exit")
        elif first[sample.pid] is sample:
            event = "start"
        marked.append(Marked(sample, event))
    return marked


def write_csv(path: Path, marked: Iterable[Marked]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for item in marked:
            s = item.sample
            writer.writerow([f"{s.time_s:.3f}", s.worker, s.pid, _mb(s.rss_kb), _mb(s.uss_kb),
                             _mb(s.pss_kb), s.invocations, item.event])


def counter_totals(snapshots: Iterable[Snapshot]) -> dict[str, int]:
    """The supervisor's counters over the run, added up across runtimes when one restarted."""
    last: dict[int, dict[str, int]] = {}
    for snap in snapshots:
        last[snap.runtime_start] = snap.counters
    return {name: sum(counters.get(name, 0) for counters in last.values())
            for name in COUNTERS}


def peaks(snapshots: Iterable[Snapshot]) -> dict[str, float]:
    worker_uss = total_pss = total_uss = 0
    for snap in snapshots:
        worker_uss = max([worker_uss, *(s.uss_kb for s in snap.samples)])
        total_pss = max(total_pss, snap.total_pss_kb)
        total_uss = max(total_uss, sum(s.uss_kb for s in snap.samples))
    return {"peak_worker_uss_mb": _mb(worker_uss), "peak_total_pss_mb": _mb(total_pss),
            "peak_total_uss_mb": _mb(total_uss)}


def build(settings: dict[str, Any], load: LoadResult, snapshots: list[Snapshot],
          leak: LeakEstimate, verdict: Verdict, sites: list[LeakSite] | None) -> dict[str, Any]:
    counters = counter_totals(snapshots)
    report: dict[str, Any] = {
        **settings,
        "verdict": verdict.outcome,
        "interrupted": bool(verdict.interrupted),  # stopped before its duration: a partial report
        "exit_status": verdict.status,
        "invocations": load.invocations,
        "failures": load.failures,
        "function_errors": load.function_errors,
        "failures_by_error": load.failures_by_error,
        "invocations_per_s": load.requests_per_s,
        "recycles": counters["recycles"],
        "crashes": counters["crashes"],
        "kills": counters["kills"],
        "worker_lifetimes": len({s.pid for s in samples(snapshots)}),
        **peaks(snapshots),
        "latency_ms": load.latency_ms,
        "samples": len(snapshots),
        "leak": leak.as_dict(),
        "decision": verdict.as_dict(),
    }
    if sites is not None:
        report["leak_sites"] = [site.as_dict() for site in sites]
    return report


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def summary(report: dict[str, Any], headline: str, out: Path) -> str:
    latency = report["latency_ms"]
    limit = (f"{report['memory_limit_mb']:g} MB limit" + (" (safety)" if report["safety_limit"]
                                                          else ""))
    lines = [
        f"forkric soak: {report['handler']}, {report['elapsed_s']:g} s of load "
        f"({report['duration_s']:g} s asked), {report['users']} users, {report['workers']} "
        f"workers, {limit}",
        f"  {report['invocations']} invocations ({report['invocations_per_s']:g}/s), "
        f"{report['failures']} failed ({report['function_errors']} function errors); "
        f"latency p50 {_ms(latency.get('p50'))}, p99 {_ms(latency.get('p99'))}, "
        f"max {_ms(latency.get('max'))}",
        f"  {report['recycles']} recycles, {report['crashes']} crashes; peak worker USS "
        f"{report['peak_worker_uss_mb']:.1f} MB, peak total PSS "
        f"{report['peak_total_pss_mb']:.1f} MB",
    ]
    for name, count in sorted(report["failures_by_error"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    failed: {count} x {name}")
    lines.append(f"  {headline}")
    for site in report.get("leak_sites", [])[:3]:
        lines.append(f"    grew at {site['site']}: +{site['growth_mb']:.1f} MB "
                     f"(in {site['workers']} recycled worker(s))")
    for text in report["decision"]["warnings"]:
        lines.append(f"  warning: {text}")
    lines.append(f"  {out / 'report.json'}, {out / 'memory.csv'}, {out / 'memory.png'}")
    return "\n".join(lines)


def _mb(kb: float) -> float:
    return round(kb / 1024, 3)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"
