"""`make demo`: forkric local on the heavy example handler, 4 workers, a short headless Locust run,
then throughput, latency percentiles and what the 4 workers cost in memory against one.

Bounded: about 30 s on 2 cores (start, 10 s of load, stop); everything it starts, it stops.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from forkric import memory

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "loadtest.handlers.heavy.handler"
WORKERS = 4
USERS = 16
DURATION = "10s"
START_TIMEOUT_S = 60.0
LOCUST_TIMEOUT_S = 60.0


def start_local(log_path: Path) -> tuple[subprocess.Popen, int]:
    """forkric local on an ephemeral port; its port, once it listens and says it is ready
    (every worker polls the Runtime API): the load then measures invocations, not the import."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "forkric", "local", HANDLER, "--workers", str(WORKERS),
             "--port", "0", "--timeout", "30"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    port = 0
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"Invoke API on http://127\.0\.0\.1:(\d+)/", log_path.read_text())
        port = int(found.group(1)) if found else 0
        if port and status(port).get("ready"):
            return process, port
        time.sleep(0.1)
    stop(process)
    raise SystemExit(f"forkric local did not start:\n{log_path.read_text()[-3000:]}")


def status(port: int) -> dict[str, Any]:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/status")
        return json.loads(conn.getresponse().read())
    except OSError:
        return {}


def run_locust(port: int, folder: Path) -> dict[str, str]:
    """A headless Locust run; the aggregated row of its CSV statistics."""
    prefix = folder / "demo"
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
               "--headless", "-u", str(USERS), "-r", str(USERS), "-t", DURATION,
               "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--only-summary",
               "--event", "@" + str(ROOT / "loadtest" / "events" / "heavy.json")]
    print(f"demo: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=ROOT, timeout=LOCUST_TIMEOUT_S, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    with open(f"{prefix}_stats.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return next(row for row in rows if row["Name"] == "Aggregated")


def memory_report(port: int) -> list[str]:
    """The workers' memory: each one's RSS, PSS, USS, and the total against one process."""
    board = status(port)
    supervisor = memory.usage(board["runtime"]["pid"])
    usages = [memory.usage(slot["pid"]) for slot in board["workers"]["slots"]]
    mb = 1024
    lines = [f"  supervisor (imported the handler once): RSS {supervisor.rss_kb / mb:7.1f} MB"]
    for number, usage in enumerate(usages, 1):
        lines.append(f"  worker {number}: RSS {usage.rss_kb / mb:7.1f} MB   PSS "
                     f"{usage.pss_kb / mb:7.1f} MB   USS {usage.uss_kb / mb:7.1f} MB")
    total_pss = sum(u.pss_kb for u in usages) + supervisor.pss_kb
    total_uss = sum(u.uss_kb for u in usages)
    # The supervisor is what any process that imports the handler itself holds.
    one = supervisor.rss_kb
    lines += [
        f"  {len(usages)} workers + supervisor, PSS total: {total_pss / mb:7.1f} MB "
        f"(private USS of the workers: {total_uss / mb:.1f} MB)",
        f"  one process that imported the handler: RSS {one / mb:.1f} MB; "
        f"{len(usages)} such processes: {len(usages) * one / mb:.1f} MB",
        f"  forkric serves with {len(usages)} workers in {total_pss / one:.2f}x the memory of one "
        f"process ({len(usages) * one / total_pss:.1f}x less than {len(usages)} imports)",
    ]
    return lines


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="forkric-demo-") as tmp:
        folder = Path(tmp)
        print(f"demo: forkric local {HANDLER} --workers {WORKERS}", flush=True)
        process, port = start_local(folder / "local.log")
        try:
            print(f"demo: listening on 127.0.0.1:{port}; {USERS} Locust users for {DURATION}",
                  flush=True)
            row = run_locust(port, folder)
            counts = status(port).get("invocations", {})
            memory_lines = memory_report(port)
        finally:
            code = stop(process)
        requests, failures = int(row["Request Count"]), int(row["Failure Count"])
        print(f"\nthroughput: {float(row['Requests/s']):.1f} invocations/s "
              f"({requests} invocations, {failures} failures; service counts: {counts})")
        print("latency ms: " + "  ".join(f"p{p.rstrip('%')} {row[p]}"
                                         for p in ("50%", "90%", "95%", "99%", "100%")))
        print("memory:")
        print("\n".join(memory_lines))
        print(f"forkric local stopped (exit {code})")
        return 0 if requests and not failures and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
