"""A heavy handler for the supervisor benchmarks: 200+ MB of Python objects built at import,
and a leak on demand. Only the standard library and psutil, so it runs under any interpreter."""

import os
import time

import psutil

STARTED = time.time()
# About 230 MB of small Python objects, as a big model or cache would be.
TABLE = {i: (str(i) * 3, float(i), [i, i + 1]) for i in range(650_000)}
_held: list[bytes] = []


def handler(event, context):
    if event.get("leak_kb"):
        _held.append(b"x" * (event["leak_kb"] * 1024))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("kill"):
        os.kill(os.getpid(), 9)
    uss = psutil.Process().memory_full_info().uss if event.get("uss") else 0
    return {"pid": os.getpid(), "ppid": os.getppid(), "uss_kb": uss // 1024,
            "rows": len(TABLE), "held_kb": sum(map(len, _held)) // 1024}
