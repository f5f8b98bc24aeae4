"""Benchmark: invocations per second of a trivial handler through forkric local (16 clients,
4 workers, nothing may be rejected) against the AWS RIE in managed-instances mode (4 workers,
4 clients: its accepted invocations per second; it rejects a call when no worker polls).

    python -m loadtest.bench_local [--quick] [--rounds N]

Then one long log line: a handler prints 5 MB, then 50 MB, without a newline; the service's CPU
for each (its process only: the capture splits the line at 256 KiB and echoes it) shows the
capture linear in what arrives. Goal: 50 MB in under a second (it took 10.6 s for 40 MB when the
partial line was joined and split again on every read).

Like with like: the same runtime (forkric, 4 forked workers, this checkout) on the same
interpreter runs under both, so the service is what differs. The RIE's LMI mode runs its
bootstrap as uid 993, which needs Debian's /usr/bin/python3 (tests/support/rie.py); forkric
local runs on that interpreter too (its runtime child is its own interpreter), with its `local`
dependencies added. Both services run for the whole benchmark; the load generator (aiohttp,
each client back to back on one kept-alive connection, on uvloop when installed) drives one of
them per round, alternating, so that whatever else the machine does falls on both alike; the
medians of the rounds are reported, with the CPU each party spent per invocation (user + system,
psutil): the load generator, the service (forkric local's process, the RIE's), the runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from yarl import URL

from forkric.local import run_loop
from loadtest.processes import cpu_seconds
from tests.support import rie
from tests.support.local import local

WORKERS = 4
LOCAL_CLIENTS = 16
RIE_CLIENTS = 4
GOAL = 1.2
WARM_UP_S = 0.5
HANDLER_SOURCE = "def handler(event, context):\n    return {'ok': True}\n"
LOG_LINE_SOURCE = ("import sys\n\ndef handler(event, context):\n"
                   "    sys.stdout.write('x' * event['bytes'])\n    sys.stdout.flush()\n"
                   "    return {'ok': True}\n")
LOG_LINE_MB = (5, 50)
LOG_LINE_GOAL_S = 1.0
# forkric local's own dependencies (pyproject's `local` extra), added to the RIE tests' venv.
LOCAL_DEPS = ("uvicorn>=0.30", "uvloop>=0.19; sys_platform != 'win32'", "watchfiles>=0.21")


@dataclass
class Load:
    accepted: int = 0
    rejected: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_us: dict[str, float] = field(default_factory=dict)  # per request, by party

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * p), len(ordered) - 1)] * 1000 if ordered else 0.0


async def _client(session: aiohttp.ClientSession, url: URL, until: float, load: Load) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        async with session.post(url, data=b"{}") as response:
            await response.read()
            if response.status == 200 and "X-Amz-Function-Error" not in response.headers:
                load.accepted += 1
                load.latencies.append(time.monotonic() - started)
            else:
                load.rejected += 1


async def _drive(port: int, clients: int, seconds: float) -> Load:
    url = URL(f"http://127.0.0.1:{port}{rie.INVOKE_PATH}")
    load = Load()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up: connections made, workers polling.
        await asyncio.gather(*(_client(session, url, time.monotonic() + WARM_UP_S, Load())
                               for _ in range(clients)))
        started = time.monotonic()
        await asyncio.gather(*(_client(session, url, started + seconds, load)
                               for _ in range(clients)))
        load.seconds = time.monotonic() - started
    return load


def drive(port: int, clients: int, seconds: float) -> Load:
    return run_loop(_drive(port, clients, seconds))


@dataclass
class Peer:
    """One service under load: its process, and its runtime as the process's descendants."""

    name: str
    port: int
    clients: int
    pid: int
    rounds: list[Load] = field(default_factory=list)

    def run_round(self, seconds: float) -> Load:
        service = psutil.Process(self.pid)
        runtime = service.children(recursive=True)
        before = time.process_time(), cpu_seconds([service]), cpu_seconds(runtime)
        load = drive(self.port, self.clients, seconds)
        after = time.process_time(), cpu_seconds([service]), cpu_seconds(runtime)
        # The warm-up's requests are counted in the CPU too: scale by all the round's requests.
        requests = (load.accepted + load.rejected) * (seconds + WARM_UP_S) / seconds
        load.cpu_us = {party: (end - start) / requests * 1e6 for party, start, end in
                       zip(("loadgen", "service", "runtime"), before, after, strict=True)}
        self.rounds.append(load)
        return load


@contextlib.contextmanager
def task_dir() -> Iterator[Path]:
    folder = rie.readable_dir("bench-task-")
    (folder / "app.py").write_text(HANDLER_SOURCE)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def service_python(runtime_python: Path) -> Path:
    """The RIE's runtime interpreter with forkric local's dependencies added to its venv."""
    if subprocess.run([str(runtime_python), "-c", "import uvicorn, uvloop, watchfiles"],
                      capture_output=True).returncode:
        site = subprocess.run([str(runtime_python), "-c",
                               "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # The same Python version and ABI as this one, as tests/support/rie.py installs it.
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", site,
                        *LOCAL_DEPS], check=True)
    return runtime_python


@contextlib.contextmanager
def local_peer(task: Path, python: Path | None) -> Iterator[Peer]:
    with local("app.handler", task, workers=WORKERS, timeout=30, log_path=task / "local.log",
               python=python) as service:
        peer = Peer("forkric local", service.port, LOCAL_CLIENTS, service.process.pid)
        yield peer
        peer_rejected = service.status()["invocations"]["rejected"]
        if peer_rejected and peer.rounds:
            peer.rounds[-1].rejected = max(peer.rounds[-1].rejected, peer_rejected)


@contextlib.contextmanager
def rie_peer(task: Path, python: Path) -> Iterator[Peer]:
    runtime_dir = rie.readable_dir("bench-runtime-")
    try:
        rie.write_bootstrap(runtime_dir, python)
        env = rie.base_env(_HANDLER="app.handler", AWS_LAMBDA_FUNCTION_TIMEOUT="30")
        with rie.managed_instances(runtime_dir, task, WORKERS, env=env) as emulator:
            # LMI mode starts the runtime at once: wait until an invocation goes through.
            deadline = time.monotonic() + 30
            while emulator.invoke({}).status != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the RIE never answered 200:\n{emulator.log()}")
                time.sleep(0.05)
            yield Peer("RIE (LMI)", emulator.port, RIE_CLIENTS, emulator.process.pid)
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _row(peer: Peer) -> dict[str, Any]:
    rounds = peer.rounds
    row: dict[str, Any] = {
        "benchmark": "local vs RIE", "service": peer.name, "workers": WORKERS,
        "clients": peer.clients, "rounds": len(rounds),
        "accepted_per_s": round(_median([r.rate for r in rounds]), 1),
        "accepted": sum(r.accepted for r in rounds), "rejected": sum(r.rejected for r in rounds),
        "p50_ms": round(_median([r.percentile(0.5) for r in rounds]), 2),
        "p99_ms": round(_median([r.percentile(0.99) for r in rounds]), 2)}
    for party in ("loadgen", "service", "runtime"):
        row[f"{party}_cpu_us"] = round(_median([r.cpu_us[party] for r in rounds]))
    return row


def run(quick: bool, rounds: int | None = None) -> list[dict[str, Any]]:
    """Result rows for `make bench`: forkric local, the RIE (LMI), and their ratio."""
    # Many short rounds rather than a few long ones: this machine's speed drifts by 20% and more
    # within a minute, and a pair of adjacent rounds sees the same machine.
    seconds = 3.0 if quick else 6.0
    rounds = rounds or (3 if quick else 9)
    skipped = ""
    try:
        runtime_python: Path | None = rie.system_python()
    except Exception as exc:  # no Debian python3: no RIE either, forkric local on this one
        runtime_python, skipped = None, str(exc)
    with contextlib.ExitStack() as stack:
        task = stack.enter_context(task_dir())
        ours = stack.enter_context(local_peer(
            task, service_python(runtime_python) if runtime_python else None))
        theirs: Peer | None = None
        if runtime_python is not None:
            try:
                theirs = stack.enter_context(rie_peer(task, runtime_python))
            except Exception as exc:  # no root, no unshare, no network for the RIE
                skipped = str(exc)
        for _ in range(rounds):
            ours.run_round(seconds)
            if theirs is not None:
                theirs.run_round(seconds)
        stack.close()  # forkric local's own count of rejected invocations is read on leaving
    rows = [_row(ours)]
    if theirs is None:
        rows.append({"benchmark": "local vs RIE", "service": "RIE (LMI)", "skipped": skipped})
        return rows
    rows.append(_row(theirs))
    # Each round of ours is paired with the RIE's round right after it: the median of the ratios.
    ratios = [a.rate / b.rate if b.rate else float("inf")
              for a, b in zip(ours.rounds, theirs.rounds, strict=True)]
    ratio = _median(ratios)
    rejected = sum(r.rejected for r in ours.rounds)
    rows.append({"benchmark": "local vs RIE", "service": "ratio",
                 "accepted_per_s": round(ratio, 2),
                 "round_ratios": " ".join(f"{r:.2f}" for r in ratios), "goal": GOAL,
                 "met": ratio >= GOAL and rejected == 0})
    return rows


def log_line_rows() -> list[dict[str, Any]]:
    """The service's CPU seconds for one log line of 5 MB and of 50 MB (no newline)."""
    folder = Path(rie.readable_dir("bench-log-line-"))
    (folder / "app.py").write_text(LOG_LINE_SOURCE)
    rows: list[dict[str, Any]] = []
    try:
        with local("app.handler", folder, workers=1, timeout=60,
                   log_path=folder / "local.log") as service:
            process = psutil.Process(service.process.pid)
            for megabytes in LOG_LINE_MB:
                before = cpu_seconds([process])
                reply = service.invoke({"bytes": megabytes * 1_000_000}, timeout=120)
                if reply.status != 200:
                    raise RuntimeError(f"the log line invocation failed: {reply.body[:200]!r}")
                rows.append({"benchmark": "local: one long log line", "service": "forkric local",
                             "line_mb": megabytes,
                             "service_cpu_s": round(cpu_seconds([process]) - before, 3)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    small, big = rows
    ratio = big["service_cpu_s"] / small["service_cpu_s"] if small["service_cpu_s"] else 0.0
    big.update(cpu_ratio_to_5_mb=round(ratio, 1), goal_s=LOG_LINE_GOAL_S,
               met=big["service_cpu_s"] < LOG_LINE_GOAL_S)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s each, not 9 of 6")
    parser.add_argument("--rounds", type=int, help="rounds of each service, alternated")
    args = parser.parse_args()
    rows = run(args.quick, args.rounds) + log_line_rows()
    for row in rows:
        print("  ".join(f"{key}={value}" for key, value in row.items() if key != "benchmark"))
    ratio = next((row for row in rows if row.get("service") == "ratio"), None)
    met = all(row["met"] for row in rows if "met" in row)
    return 0 if (ratio is None or ratio["met"]) and met else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
