"""Supervisor benchmarks: forkric against awslambdaric 4.x in its own multi-process mode, both run
by the real RIE in managed-instances mode, same heavy handler, same run.

    python -m loadtest.bench_supervisor [--quick]

Needs root (the RIE's LMI mode runs in a private mount namespace, see tests/support/rie.py).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from loadtest.processes import tree
from tests.support import rie

APP = Path(__file__).parent / "bench_apps" / "objects.py"
WORKERS = 4
PEER = "awslambdaric 4.2.2"
PROBE_S = 0.05  # each probe invocation lasts this long, so that 4 at once need 4 workers


@contextlib.contextmanager
def lmi(module: str, workers: int = WORKERS, **env: str) -> Iterator[rie.Emulator]:
    """The RIE in LMI mode running `python -m MODULE objects.handler` from /var/runtime."""
    python = rie.system_python()
    root = rie.readable_dir("bench-")
    task = root / "task"
    task.mkdir()
    shutil.copy(APP, task / "objects.py")
    rie.write_bootstrap(root / "runtime", python, module)
    try:
        with rie.managed_instances(root / "runtime", task, workers,
                                   env=rie.base_env(_HANDLER="objects.handler", **env)) as emu:
            yield emu
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ok(reply: rie.Reply) -> bool:
    return reply.status == 200 and "error-type" not in reply.headers


def burst(emu: rie.Emulator, count: int, payload: dict[str, Any]) -> list[rie.Reply]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: emu.invoke(payload), range(count)))


def serving(emu: rie.Emulator, count: int) -> bool:
    """Do `count` concurrent invocations all succeed, on `count` different workers?"""
    replies = burst(emu, count, {"sleep": PROBE_S})
    return all(map(ok, replies)) and len({r.json()["pid"] for r in replies}) == count


def wait_serving(emu: rie.Emulator, count: int, timeout: float) -> float | None:
    """Seconds until `count` workers serve at once, or None if not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if serving(emu, count):
                return time.monotonic() - started
        except OSError:  # the emulator shut down: it will not serve again
            return None
        time.sleep(0.01)
    return None


def total_pss_mb(emu: rie.Emulator) -> float:
    return sum(p.memory_full_info().pss for p in tree(emu.process.pid)) / 2**20


def start_and_memory(module: str, workers: int = WORKERS, **env: str) -> dict[str, float]:
    """Time from the RIE starting the runtime until 4 workers serve 4 invocations at once (less
    the time those invocations take), then the runtime's total PSS."""
    started = time.monotonic()
    with lmi(module, workers, **env) as emu:
        ready = wait_serving(emu, workers, 120)
        assert ready is not None, emu.log()[-2000:]
        elapsed = time.monotonic() - started - PROBE_S
        result = {"start_s": elapsed, "pss_mb": total_pss_mb(emu)}
        print(f"{module} {workers} {env or ''}: {result}", flush=True)
        return result


def death_to_error(module: str, timeout_s: int) -> dict[str, float | None]:
    """A worker killed mid-invocation: how long until its invoker hears, and until N serve."""
    with lmi(module, AWS_LAMBDA_FUNCTION_TIMEOUT=str(timeout_s)) as emu:
        assert wait_serving(emu, WORKERS, 120) is not None
        started = time.monotonic()
        reply = emu.invoke({"kill": True})
        answered = time.monotonic() - started
        back = wait_serving(emu, WORKERS, 2 * timeout_s)
        print(f"{module}: the killed worker's invoker got {reply.status} {reply.body[:120]!r} "
              f"after {answered:.3f} s; {WORKERS} serving again after {back} s", flush=True)
        return {"error_s": answered, "capacity_s": back}


def leak(limit_mb: int, leak_kb: int, calls: int) -> dict[str, float]:
    """forkric recycling a leaking worker: the peak USS a worker reached, failed invocations."""
    with lmi("forkric", 2, FORKRIC_MAX_WORKER_MEMORY_MB=str(limit_mb)) as emu:
        assert wait_serving(emu, 2, 120) is not None
        peak, failed, pids = 0, 0, set()
        for _ in range(calls):
            reply = emu.invoke({"leak_kb": leak_kb, "uss": True})
            while reply.status == 400 and b"Runtime.Unavailable" in reply.body:
                reply = emu.invoke({"leak_kb": leak_kb, "uss": True})  # a fork is starting
            if not ok(reply):
                failed += 1
                continue
            body = reply.json()
            peak = max(peak, body["uss_kb"])
            pids.add(body["pid"])
        return {"peak_uss_mb": peak / 1024, "failed": failed, "workers_used": len(pids)}


def row(benchmark: str, metric: str, ours: float | None, peer: float | None, goal: str,
        ratio: bool = True) -> dict[str, Any]:
    return {"benchmark": benchmark, "metric": metric, "forkric": ours, "peer": peer,
            "peer_name": PEER, "ratio": ours / peer if ratio and ours and peer else None,
            "goal": goal}


def run(quick: bool = False) -> list[dict[str, Any]]:
    ours, theirs = start_and_memory("forkric"), start_and_memory("awslambdaric")
    # The escape hatch of the fork-safety issue: what importing in each worker costs.
    per_worker = start_and_memory("forkric", FORKRIC_IMPORT_MODE="per-worker")
    sixteen = start_and_memory("forkric", 16)
    # Lambda applies the function timeout to init as well: it must cover 4 heavy imports.
    timeout_s = 20
    our_death, their_death = death_to_error("forkric", timeout_s), death_to_error(
        "awslambdaric", timeout_s)
    leaked = leak(150, 4096, 60 if quick else 200)
    return [
        row("supervisor", f"total PSS of {WORKERS} workers, heavy handler (MB)", ours["pss_mb"],
            theirs["pss_mb"], "<= 0.35x"),
        row("supervisor", f"start until {WORKERS} workers serve (s)", ours["start_s"],
            theirs["start_s"], "<= 0.6x"),
        row("supervisor", "total PSS of 16 workers, heavy handler (MB)", sixteen["pss_mb"], None,
            "< 512", False),
        row("supervisor", f"FORKRIC_IMPORT_MODE=per-worker: total PSS of {WORKERS} (MB)",
            per_worker["pss_mb"], theirs["pss_mb"], "the mode's cost"),
        row("supervisor", f"FORKRIC_IMPORT_MODE=per-worker: start until {WORKERS} serve (s)",
            per_worker["start_s"], theirs["start_s"], "the mode's cost"),
        row("supervisor", "worker death to its invocation's error (s)", our_death["error_s"],
            their_death["error_s"], "< 0.1 s"),
        row("supervisor", f"after a death, until {WORKERS} serve again (s)",
            our_death["capacity_s"], their_death["capacity_s"], "soon; peer: never", False),
        row("supervisor", "leak 4 MB/call, limit 150 MB: peak worker USS (MB)",
            leaked["peak_uss_mb"], None, "< 154", False),
        row("supervisor", "leak 4 MB/call, limit 150 MB: failed invocations", leaked["failed"],
            None, "0", False),
    ]


def show(rows: list[dict[str, Any]]) -> None:
    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    print(f"{'metric':58} {'forkric':>10} {'peer':>10} {'ratio':>7}  goal")
    for r in rows:
        print(f"{r['metric']:58} {fmt(r['forkric']):>10} {fmt(r['peer']):>10} "
              f"{fmt(r['ratio']):>7}  {r['goal']}")
    print(f"peer: {PEER} (multi-process mode); both under the AWS RIE in managed-instances mode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    show(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
