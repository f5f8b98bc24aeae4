"""Serial invocations of a trivial handler through the real RIE (classic mode): forkric against
awslambdaric 4.2.2 in the same run.

`python -m loadtest.bench_runtime [--quick]`. Both runtimes run under their own RIE at the same
time; the invoker (one kept-alive http.client connection per RIE) drives one of them per round,
alternating, so that whatever else the machine does falls on both alike; medians are reported.
CPU is the runtime's process tree (the RIE's descendants: forkric's supervisor and its worker,
awslambdaric's one process), user + system, from psutil.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from loadtest.processes import cpu_seconds, tree
from tests.support import rie

HANDLER = '''def handler(event, context):
    return {"ok": True}
'''
PEER = "awslambdaric"
PEER_NAME = "awslambdaric 4.2.2 (native client)"
BENCHMARK = "runtime: serial invocations through the RIE"


@dataclass
class Round:
    invocations: int
    seconds: float
    cpu_seconds: float


class Target:
    """One runtime under its own RIE, with a kept-alive invoker connection."""

    def __init__(self, name: str, emulator: rie.Emulator) -> None:
        self.name = name
        self.emulator = emulator
        self.conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=30)
        self.body = json.dumps({"n": 1}).encode()
        self.headers = {"Content-Type": "application/json"}
        self.rounds: list[Round] = []

    def invoke(self) -> None:
        self.conn.request("POST", rie.INVOKE_PATH, self.body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {data[:300]!r}")

    def runtime_processes(self) -> list[psutil.Process]:
        return tree(self.emulator.process.pid)

    def run_round(self, count: int) -> None:
        processes = self.runtime_processes()
        cpu_before = cpu_seconds(processes)
        started = time.perf_counter()
        for _ in range(count):
            self.invoke()
        elapsed = time.perf_counter() - started
        if {p.pid for p in self.runtime_processes()} != {p.pid for p in processes}:
            raise RuntimeError(f"{self.name}: the runtime's processes changed during a round")
        self.rounds.append(Round(count, elapsed, cpu_seconds(processes) - cpu_before))

    def rate(self) -> float:
        return statistics.median(r.invocations / r.seconds for r in self.rounds)

    def cpu_ms(self) -> float:
        return statistics.median(1000 * r.cpu_seconds / r.invocations for r in self.rounds)


@contextlib.contextmanager
def targets(task_dir: Path) -> Iterator[dict[str, Target]]:
    env = rie.base_env(LAMBDA_TASK_ROOT=str(task_dir))
    with contextlib.ExitStack() as stack:
        found = {}
        for name in ("forkric", PEER):
            emulator = stack.enter_context(rie.classic(
                [sys.executable, "-m", name, "bench_handler.handler"], task_dir, env,
                task_dir / f"rie-{name}.log"))
            found[name] = Target(name, emulator)
        yield found
        for target in found.values():
            target.conn.close()


def run(quick: bool) -> list[dict[str, Any]]:
    """The benchmark's rows, for `make bench` to gather with the others."""
    warmup, per_round, rounds = (100, 300, 3) if quick else (500, 2000, 7)
    with tempfile.TemporaryDirectory(prefix="forkric-bench-") as tmp:
        task_dir = Path(tmp)
        (task_dir / "bench_handler.py").write_text(HANDLER)
        with targets(task_dir) as found:
            for target in found.values():  # the first invoke starts the runtime
                for _ in range(warmup):
                    target.invoke()
            order = list(found.values())
            for index in range(rounds):
                for target in order if index % 2 == 0 else reversed(order):
                    target.run_round(per_round)
            ours, peer = found["forkric"], found[PEER]
            return [
                _row("invocations/s (median of rounds)", ours.rate(), peer.rate(), ">= 1.0"),
                _row("runtime CPU ms per invocation (median)", ours.cpu_ms(), peer.cpu_ms(),
                     "<= 0.8"),
            ]


def _row(metric: str, ours: float, peer: float, goal: str) -> dict[str, Any]:
    return {"benchmark": BENCHMARK, "metric": metric, "forkric": round(ours, 4),
            "peer": round(peer, 4), "peer_name": PEER_NAME,
            "ratio": round(ours / peer, 3) if peer else float("nan"), "goal": goal}


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = ("metric", "forkric", "peer", "ratio", "goal")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(f"{rows[0]['benchmark']}  (peer: {rows[0]['peer_name']})")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args(argv)
    print_table(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
