"""gc.freeze after the import, or not: what each costs, measured side by side in one run.

    python -m loadtest.bench_gc_freeze

Shared memory: the heavy handler imported once, 4 forked workers each serve 30 invocations and
run a full collection (as a long-lived worker eventually does); total PSS of the 4 workers, with
and without gc.freeze() before the fork. Without it a worker's collection writes to every tracked
object's header, so the pages holding them stop being shared.

Collectability: a handler that replaces a 64 MB object graph with cycles made at import ("refresh
the model"): frozen, the old graph is never freed in the worker; unfrozen, the worker's next
collection frees it. Either way the supervisor still holds it, so its pages stay in memory once.
"""

from __future__ import annotations

import gc
import os
import sys
import time

import psutil

WORKERS = 4


def _pss_mb(pids: list[int]) -> float:
    return sum(psutil.Process(pid).memory_full_info().pss for pid in pids) / 2**20


def _fork_workers(work: object) -> tuple[list[int], list[int]]:
    """Fork WORKERS children that run work() then wait; returns (pids, write ends to release)."""
    pids, gates = [], []
    for _ in range(WORKERS):
        ready_r, ready_w = os.pipe()
        gate_r, gate_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            work()  # type: ignore[operator]
            os.write(ready_w, b"x")
            os.read(gate_r, 1)
            os._exit(0)
        os.read(ready_r, 1)
        pids.append(pid)
        gates.append(gate_w)
    return pids, gates


def _release(pids: list[int], gates: list[int]) -> None:
    for gate in gates:
        os.write(gate, b"x")
    for pid in pids:
        os.waitpid(pid, 0)


def shared_memory(freeze: bool) -> float:
    from loadtest.handlers import heavy

    def work() -> None:
        for _ in range(30):
            heavy.handler({"n": 16}, None)
        gc.collect()

    gc.collect()
    if freeze:
        gc.freeze()
    try:
        pids, gates = _fork_workers(work)
        time.sleep(0.5)
        pss = _pss_mb(pids)
        _release(pids, gates)
        return pss
    finally:
        gc.unfreeze()


class Node:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.me = self  # a cycle: only the cyclic collector frees it


def init_garbage(freeze: bool) -> tuple[float, float, float, float]:
    """One worker replaces a 64 MB cyclic graph made at import ("refresh the model"): its RSS
    and USS before and after, in MB."""
    model = [Node(os.urandom(1 << 20)) for _ in range(64)]
    gc.collect()
    if freeze:
        gc.freeze()
    read_r, read_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        me = psutil.Process()
        before = me.memory_full_info()
        model[:] = [Node(os.urandom(1 << 20)) for _ in range(64)]  # the old graph: garbage
        gc.collect()
        after = me.memory_full_info()
        os.write(read_w, f"{before.rss} {before.uss} {after.rss} {after.uss}".encode())
        os._exit(0)
    values = [int(v) / 2**20 for v in os.read(read_r, 200).split()]
    os.waitpid(pid, 0)
    gc.unfreeze()
    del model
    gc.collect()
    return values[0], values[1], values[2], values[3]


def main() -> int:
    frozen, thawed = shared_memory(True), shared_memory(False)
    print(f"heavy handler, {WORKERS} workers after 30 invocations and a full collection each: "
          f"total PSS {frozen:.0f} MB with gc.freeze, {thawed:.0f} MB without "
          f"({thawed / frozen:.2f}x)")
    for freeze in (True, False):
        rss0, uss0, rss1, uss1 = init_garbage(freeze)
        print(f"a worker replaces a 64 MB cyclic graph made at import, gc.freeze={freeze}: "
              f"RSS {rss0:.0f} -> {rss1:.0f} MB, USS {uss0:.0f} -> {uss1:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
