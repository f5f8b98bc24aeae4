"""Benchmark: invocations per second of a trivial handler through forkric local (16 clients,
4 workers, nothing may be rejected) against the AWS RIE in managed-instances mode (4 workers,
4 clients: its accepted invocations per second; it rejects a call when no worker polls).

The same runtime (forkric, 4 forked workers) runs under both, so the service is what differs.
The load generator is aiohttp, each client back to back on one kept-alive connection.

    python -m loadtest.bench_local [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import rie
from tests.support.local import Local, local

WORKERS = 4
LOCAL_CLIENTS = 16
RIE_CLIENTS = 4
GOAL = 1.2
HANDLER_SOURCE = "def handler(event, context):\n    return {'ok': True}\n"


@dataclass
class Load:
    accepted: int = 0
    rejected: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * p), len(ordered) - 1)] * 1000 if ordered else 0.0


async def _client(session: aiohttp.ClientSession, url: str, until: float, load: Load) -> None:
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
    url = f"http://127.0.0.1:{port}{rie.INVOKE_PATH}"
    load = Load()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up: connections made, workers polling.
        await asyncio.gather(*(_client(session, url, time.monotonic() + 0.5, Load())
                               for _ in range(clients)))
        started = time.monotonic()
        await asyncio.gather(*(_client(session, url, started + seconds, load)
                               for _ in range(clients)))
        load.seconds = time.monotonic() - started
    return load


def drive(port: int, clients: int, seconds: float) -> Load:
    return asyncio.run(_drive(port, clients, seconds))


@contextlib.contextmanager
def task_dir() -> Iterator[Path]:
    folder = rie.readable_dir("bench-task-")
    (folder / "app.py").write_text(HANDLER_SOURCE)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_local(seconds: float) -> Load:
    with task_dir() as task, local("app.handler", task, workers=WORKERS, timeout=30,
                                   log_path=task / "local.log") as service:
        return _checked(service, drive(service.port, LOCAL_CLIENTS, seconds))


def _checked(service: Local, load: Load) -> Load:
    rejected = service.status()["invocations"]["rejected"]
    load.rejected = max(load.rejected, rejected)
    return load


def bench_rie_lmi(seconds: float) -> Load:
    python = rie.system_python()
    with task_dir() as task:
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
                return drive(emulator.port, RIE_CLIENTS, seconds)
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)


def _row(name: str, clients: int, load: Load) -> dict[str, Any]:
    return {"benchmark": "local vs RIE", "service": name, "workers": WORKERS,
            "clients": clients, "accepted_per_s": round(load.rate, 1),
            "accepted": load.accepted, "rejected": load.rejected,
            "p50_ms": round(load.percentile(0.5), 2), "p99_ms": round(load.percentile(0.99), 2)}


def run(quick: bool) -> list[dict[str, Any]]:
    """Result rows for `make bench`: forkric local, the RIE (LMI), and their ratio."""
    seconds = 3.0 if quick else 10.0
    ours = bench_local(seconds)
    rows = [_row("forkric local", LOCAL_CLIENTS, ours)]
    try:
        theirs: Load | None = bench_rie_lmi(seconds)
    except Exception as exc:  # no root, no unshare, no network for the RIE
        rows.append({"benchmark": "local vs RIE", "service": "RIE (LMI)", "skipped": str(exc)})
        theirs = None
    if theirs is not None:
        rows.append(_row("RIE (LMI)", RIE_CLIENTS, theirs))
        ratio = ours.rate / theirs.rate if theirs.rate else float("inf")
        rows.append({"benchmark": "local vs RIE", "service": "ratio",
                     "accepted_per_s": round(ratio, 2), "goal": GOAL,
                     "met": ratio >= GOAL and ours.rejected == 0})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s of load each, not 10")
    rows = run(parser.parse_args().quick)
    for row in rows:
        print("  ".join(f"{key}={value}" for key, value in row.items() if key != "benchmark"))
    ratio = next((row for row in rows if row.get("service") == "ratio"), None)
    return 0 if ratio is None or ratio["met"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
