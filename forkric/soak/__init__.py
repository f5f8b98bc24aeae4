"""`forkric soak HANDLER`: `forkric local` and a bounded headless Locust load together, every
worker's memory sampled each second, then a verdict, a report, a chart and a summary.

Exit status (verdict.py): 0 no leak, 3 leak, 4 inconclusive (the summary says why and what to
change), 5 invocations failed (and no leak found), 1 the soak could not run; stopped part-way by
Ctrl-C or SIGTERM it stops the load at once, writes the partial report marked as interrupted,
and exits 130 or 143 (128 + the signal) unless a leak (3) or failures (5) were already found.
Without --max-worker-memory the workers are recycled at a safety limit (--safety-limit, 1024 MB
by default, less when memory is short), so a leak cannot take the machine's memory; its
recycles are evidence.
Modules: service (forkric local), load (Locust), sampler, alerts (warnings during the load),
leak (the estimator), verdict, logscan (the runtime's log), report (CSV, JSON, summary), chart
(PNG), progress (the live line).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import psutil

from forkric.config import SAFETY_LIMIT_MIN_MB, Config

if TYPE_CHECKING:  # the soak's modules import numpy and matplotlib: only when it runs
    from forkric.soak.alerts import Alerts
    from forkric.soak.load import LoadPlan, LoadResult
    from forkric.soak.sampler import Snapshot
    from forkric.soak.service import Service

EXIT_FAILED = 1
SERVICE_STOP_S = 20.0
SAFETY_SHARE_OF_FREE_MEMORY = 0.5  # all workers at the safety limit take at most this share


@dataclass(frozen=True)
class Limit:
    mb: float
    safety: bool  # the soak's own, the user gave none


@dataclass
class LoadRun:
    snapshots: list[Snapshot]
    result: LoadResult
    elapsed_s: float  # the load's wall time, as the soak saw it
    signal: int  # the signal that stopped it early (SIGINT, SIGTERM), 0 for none


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
        return f"{config.named('event')} is not JSON (inline, or @file): {exc}"
    return ""


def memory_limit(config: Config) -> Limit:
    """The workers' memory limit, MB: the user's, else a safety limit so that a leak cannot grow
    to gigabytes unnoticed (measured before it: 3.3 GB in 15 s at 400 KB per call). The safety
    limit is `config.safety_limit_mb` (--safety-limit), or less: all workers at it may take at
    most SAFETY_SHARE_OF_FREE_MEMORY of the available memory, though never under
    config.SAFETY_LIMIT_MIN_MB for that reason."""
    if config.max_worker_memory_mb:
        return Limit(config.max_worker_memory_mb, safety=False)
    free_mb = psutil.virtual_memory().available / 2**20
    share = free_mb * SAFETY_SHARE_OF_FREE_MEMORY / max(config.workers, 1)
    return Limit(min(config.safety_limit_mb, max(SAFETY_LIMIT_MIN_MB, float(int(share)))),
                 safety=True)


def soak(args: argparse.Namespace, config: Config) -> int:
    from forkric.soak import alerts, load, service

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = config.workers
    limit = memory_limit(config)
    port = service.take_port(config.host, config.port, config.named("port"))
    argv, env = service.local_command(args, config, port, limit.mb)
    local = service.start(argv, env, out / "forkric.log", config.host, port)
    stop = Interrupt()
    previous = {sig: signal.signal(sig, stop.handle) for sig in Interrupt.SIGNALS}
    try:
        waited = time.monotonic()
        # A slow import is otherwise a silent terminal: say what is awaited, then when it came.
        limit_s = f"up to {config.wait_ready_s:g} s" if config.wait_ready_s else "no limit"
        print(f"forkric soak: waiting for {config.handler}'s import and {workers} worker(s) "
              f"(forkric local on {local.url}, {limit_s}: --wait-ready)", file=sys.stderr)
        service.wait_ready(local, workers, config.wait_ready_s or float("inf"), config.handler)
        print(f"forkric soak: ready after {time.monotonic() - waited:.1f} s; "
              f"{config.duration_s:g} s of load, {config.users} users", file=sys.stderr)
        plan = load.LoadPlan(host=local.url, users=config.users, duration_s=config.duration_s,
                             event=config.event, result_path=out / "locust.json",
                             log_path=out / "locust.log",
                             invoke_timeout_s=config.timeout_s + 30.0)
        warn = alerts.Alerts(limit.mb, limit.safety, out / "forkric.log")
        run = run_load(local, plan, warn, stop)
    except KeyboardInterrupt:
        print(f"forkric soak: interrupted by {signal.Signals(stop.signum).name} before the "
              f"load began", file=sys.stderr)
        return verdict_exit(stop.signum)
    finally:
        local.stop(config.shutdown_grace_s + SERVICE_STOP_S)
    try:
        return finish(config, limit, out, run)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def verdict_exit(signum: int) -> int:
    from forkric.soak import verdict

    return verdict.EXIT_SIGNAL_BASE + signum


class Interrupt:
    """Ctrl-C (SIGINT) and SIGTERM. Before the load's end (`armed`), the first stops whatever
    the soak waits on, as KeyboardInterrupt, and is remembered; the others are only noted, so
    that the load and the service are stopped and the report written (each stop is bounded by
    its grace)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0  # the first signal while armed
        self.armed = True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        # os.write, not print: the signal may come in the middle of a print to stderr, and
        # a buffered stream written again from its handler raises RuntimeError (reentrant call).
        name = signal.Signals(signum).name
        if self.armed and not self.signum:
            self.signum = signum
            os.write(2, f"\nforkric soak: {name}: stopping\n".encode())
            raise KeyboardInterrupt
        os.write(2, f"forkric soak: {name}: the load is stopped, writing the report\n".encode())


def run_load(local: Service, plan: LoadPlan, warn: Alerts, stop: Interrupt) -> LoadRun:
    """The load and the sampler together, the progress line and the warnings fed by the
    sampler. Ctrl-C (or SIGTERM) stops the load early: what was measured is still reported."""
    from forkric.soak import load, progress, report, sampler

    line = progress.Progress(plan.duration_s)
    started = time.monotonic()
    watcher = sampler.Sampler(local.status, started)

    def on_snapshot(snap: Snapshot) -> None:
        line.update(snap, report.counter_totals(watcher.snapshots)["recycles"])
        for text in warn.check(snap):
            line.note(text)

    watcher.on_snapshot = on_snapshot
    watcher.start()
    process = load.start(plan)
    try:
        try:
            code: int | None = process.wait(plan.deadline_s)
        except subprocess.TimeoutExpired:  # stop it, keep what it wrote
            code = load.stop(process)
        except KeyboardInterrupt:
            code = load.stop(process)
    finally:
        stop.armed = False
        if process.poll() is None:
            load.stop(process)
        elapsed = time.monotonic() - started
        watcher.stop()
        line.done()
    return LoadRun(watcher.snapshots, load.read_result(plan.result_path, code), elapsed,
                   stop.signum)


def finish(config: Config, limit: Limit, out: Path, run: LoadRun) -> int:
    from forkric.soak import chart, leak, logscan, report, verdict

    log = (out / "forkric.log").read_text(errors="replace")
    recycles = logscan.memory_recycles(log)
    marked = report.mark(run.snapshots, logscan.lifetime_ends(log))
    estimate = leak.estimate(report.samples(run.snapshots), recycles)
    result = run.result
    elapsed = result.elapsed_s if result.elapsed_s is not None else run.elapsed_s
    facts = verdict.Run(limit_mb=limit.mb, safety_limit=limit.safety,
                        duration_s=config.duration_s, elapsed_s=elapsed, workers=config.workers,
                        invocations=result.invocations, failures=result.failures,
                        failures_by_error=result.failures_by_error, memory_recycles=recycles,
                        interrupted=bool(run.signal) or elapsed < config.duration_s - 1.0,
                        signal=run.signal)
    decided = verdict.decide(estimate, facts)
    settings = {"handler": config.handler, "duration_s": config.duration_s,
                "elapsed_s": round(elapsed, 1), "users": config.users,
                "workers": config.workers, "max_worker_memory_mb": config.max_worker_memory_mb,
                "memory_limit_mb": limit.mb, "safety_limit": limit.safety,
                "event": config.event}
    sites = logscan.leak_sites(log) if config.trace_leaks else None
    document = report.build(settings, result, run.snapshots, estimate, decided, sites)
    report.write_csv(out / "memory.csv", marked)
    report.write_json(out / "report.json", document)
    chart.draw(out / "memory.png", marked, run.snapshots,
               f"forkric soak: {config.handler}, {config.workers} workers, {config.users} users",
               limit.mb, decided.headline(estimate))
    print(report.summary(document, decided.headline(estimate), out))
    return decided.status
