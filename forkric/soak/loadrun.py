"""`python -m forkric.soak.loadrun`: the soak's load, Locust used as a library in a process of
its own (Locust patches the standard library with gevent when imported). It runs the
locustfile's InvokeUser for a bounded time and writes Locust's own numbers to a JSON file: the
totals, each name's counts, the errors, and the latency percentiles Locust computes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.stats import RequestStats, StatsEntry

from forkric.soak.locustfile import InvokeUser

PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="forkric.soak.loadrun")
    parser.add_argument("--host", required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--event", default="{}")
    parser.add_argument("--invoke-timeout", type=float, default=60.0)
    parser.add_argument("--out", required=True, help="the JSON file to write")
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> tuple[RequestStats, float]:
    """Locust's numbers, and the seconds the load really ran (less than asked when stopped)."""
    parsed = argparse.Namespace(event=options.event, function_name="function", think_time=0.0,
                                invoke_timeout=options.invoke_timeout)
    environment = Environment(user_classes=[InvokeUser], host=options.host, events=events,
                              parsed_options=parsed)
    runner = environment.create_local_runner()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stopped early: still report what was done
        gevent.signal_handler(sig, runner.quit)
    started = time.monotonic()
    runner.start(options.users, spawn_rate=options.users)
    # The event loop's clock is read once per turn: after a slow start it is behind, and the
    # load stopped up to a second early (14.2 s of 15 measured).
    gevent.get_hub().loop.update_now()
    gevent.spawn_later(options.duration - (time.monotonic() - started), runner.quit)
    runner.greenlet.join()
    return environment.stats, time.monotonic() - started


def entry(stats: StatsEntry) -> dict[str, Any]:
    latency: dict[str, float | None] = {
        key: stats.get_response_time_percentile(q) if stats.num_requests else None
        for key, q in PERCENTILES.items()}
    latency["max"] = round(stats.max_response_time, 1) if stats.num_requests else None
    return {"name": stats.name, "requests": stats.num_requests, "failures": stats.num_failures,
            "requests_per_s": stats.total_rps, "latency_ms": latency}


def summary(stats: RequestStats, elapsed_s: float) -> dict[str, Any]:
    return {
        "elapsed_s": round(elapsed_s, 3),
        "total": entry(stats.total),
        "entries": [entry(e) for e in stats.entries.values()],
        "errors": [{"name": e.name, "error": e.parse_error(e.error), "occurrences": e.occurrences}
                   for e in stats.errors.values()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    stats, elapsed_s = run(options)
    with open(options.out, "w") as file:
        json.dump(summary(stats, elapsed_s), file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
