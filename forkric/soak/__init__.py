"""`forkric soak HANDLER`: `forkric local` and a bounded headless Locust load together, every
worker's memory sampled each second, then a leak verdict, a report, a chart and a summary.

Exit status: 0 when no leak is suspected, 3 when one is, 1 when the soak could not run.
Modules: service (forkric local), load (Locust), sampler, leak (the estimator), logscan (the
runtime's log), report (CSV, JSON, summary), chart (PNG), progress (the live line).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from forkric.config import Config

if TYPE_CHECKING:  # the soak's modules import numpy and matplotlib: only when it runs
    from forkric.soak.load import LoadPlan, LoadResult
    from forkric.soak.sampler import Snapshot
    from forkric.soak.service import Service

EXIT_CLEAN = 0
EXIT_FAILED = 1
EXIT_LEAK = 3
SERVICE_STOP_S = 20.0


def main(args: argparse.Namespace, config: Config) -> int:
    from forkric.soak.service import ServiceError

    problem = check(args, config)
    if problem:
        print(f"forkric soak: {problem}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return soak(args, config)
    except (ServiceError, OSError) as exc:
        print(f"forkric soak: {exc}", file=sys.stderr)
        return EXIT_FAILED


def check(args: argparse.Namespace, config: Config) -> str:
    """What is wrong with the command line, or ''."""
    if not config.handler:
        return "name a handler (module.function) or set _HANDLER"
    try:
        spec = config.event
        json.loads(Path(spec[1:]).read_text() if spec.startswith("@") else spec)
    except (OSError, ValueError) as exc:
        return f"--event is not JSON (inline, or @file): {exc}"
    return ""


def soak(args: argparse.Namespace, config: Config) -> int:
    from forkric.soak import load, service

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = config.workers
    port = config.port if service.port_free("127.0.0.1", config.port) else service.free_port()
    argv, env = service.local_command(args, config, port)
    local = service.start(argv, env, out / "forkric.log", port)
    try:
        service.wait_ready(local, workers)
        plan = load.LoadPlan(host=local.url, users=config.users, duration_s=config.duration_s,
                             event=config.event, result_path=out / "locust.json",
                             log_path=out / "locust.log",
                             invoke_timeout_s=config.timeout_s + 30.0)
        snapshots, result = run_load(local, plan)
    finally:
        local.stop(config.shutdown_grace_s + SERVICE_STOP_S)
    return finish(args, config, workers, out, snapshots, result)


def run_load(local: Service, plan: LoadPlan) -> tuple[list[Snapshot], LoadResult]:
    """The load and the sampler together, the progress line fed by the sampler."""
    from forkric.soak import load, progress, report, sampler

    line = progress.Progress(plan.duration_s)
    started = time.monotonic()
    watcher = sampler.Sampler(local.status, started)
    watcher.on_snapshot = lambda snap: line.update(
        snap, report.counter_totals(watcher.snapshots)["recycles"])
    watcher.start()
    process = load.start(plan)
    try:
        try:
            code: int | None = process.wait(plan.deadline_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # stop it, keep what it wrote
            code = load.stop(process)
    finally:
        if process.poll() is None:
            load.stop(process)
        watcher.stop()
        line.done()
    return watcher.snapshots, load.read_result(plan.result_path, code)


def finish(args: argparse.Namespace, config: Config, workers: int, out: Path,
           snapshots: list[Snapshot], result: LoadResult) -> int:
    from forkric.soak import chart, leak, logscan, report

    log = (out / "forkric.log").read_text(errors="replace")
    marked = report.mark(snapshots, logscan.lifetime_ends(log))
    estimate = leak.estimate(report.samples(snapshots), logscan.memory_recycles(log))
    settings = {"handler": config.handler, "duration_s": config.duration_s,
                "users": config.users, "workers": workers,
                "max_worker_memory_mb": config.max_worker_memory_mb, "event": config.event}
    sites = logscan.leak_sites(log) if config.trace_leaks else None
    document = report.build(settings, result, snapshots, estimate, sites)
    report.write_csv(out / "memory.csv", marked)
    report.write_json(out / "report.json", document)
    chart.draw(out / "memory.png", marked, snapshots,
               f"forkric soak: {config.handler}, {workers} workers, {config.users} users",
               config.max_worker_memory_mb)
    print(report.summary(document, out))
    return EXIT_LEAK if estimate.suspected else EXIT_CLEAN
