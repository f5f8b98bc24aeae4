"""The load: a headless Locust run in its own process, bounded by --run-time and by a deadline
of ours, that leaves its numbers in CSV files.

A separate process, because Locust monkey-patches the standard library with gevent on import:
the soak's sampler thread and subprocesses stay plain, and Locust gets a CPU of its own.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_ALLOWANCE_S = 30.0  # importing Locust and gevent, spawning the users
STOP_TIMEOUT_S = 10.0  # users finish their call in flight
PERCENTILES = {"p50": "50%", "p90": "90%", "p99": "99%", "max": "100%"}
FUNCTION_ERROR_PREFIX = "function error: "  # the locustfile's (importing it imports Locust)


@dataclass(frozen=True)
class LoadPlan:
    host: str
    users: int
    duration_s: float
    event: str  # inline JSON or @file, as the locustfile takes it
    csv_prefix: Path
    log_path: Path
    invoke_timeout_s: float = 60.0

    @property
    def deadline_s(self) -> float:
        """How long the Locust process may take in all, before it is killed."""
        return self.duration_s + STARTUP_ALLOWANCE_S + STOP_TIMEOUT_S + self.invoke_timeout_s


@dataclass
class LoadResult:
    invocations: int = 0
    failures: int = 0
    function_errors: int = 0
    failures_by_error: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    requests_per_s: float = 0.0
    exit_code: int | None = None


def locust_argv(plan: LoadPlan) -> list[str]:
    run_time = max(1, math.ceil(plan.duration_s))
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", plan.host, "--users", str(plan.users), "--spawn-rate", str(plan.users),
            "--run-time", f"{run_time}s", "--stop-timeout", f"{STOP_TIMEOUT_S:g}",
            "--csv", str(plan.csv_prefix), "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0", "--event", plan.event,
            "--invoke-timeout", f"{plan.invoke_timeout_s:g}"]


def start(plan: LoadPlan) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    log_file = plan.log_path.open("wb")
    try:
        return subprocess.Popen(locust_argv(plan), env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log_file.close()


def stop(process: subprocess.Popen[bytes], grace_s: float = STOP_TIMEOUT_S) -> int:
    """Ask Locust to stop (it writes its CSV files on the way out); kill it past the grace."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def read_result(csv_prefix: Path, exit_code: int | None = None) -> LoadResult:
    """The totals, the failures by kind and the latency percentiles Locust wrote."""
    result = LoadResult(exit_code=exit_code)
    for row in _rows(Path(f"{csv_prefix}_stats.csv")):
        if row.get("Name") == "Aggregated":
            result.invocations = _int(row.get("Request Count"))
            result.failures = _int(row.get("Failure Count"))
            result.requests_per_s = round(_float(row.get("Requests/s")) or 0.0, 1)
            result.latency_ms = {key: _float(row.get(column))
                                 for key, column in PERCENTILES.items()}
        elif (row.get("Name") or "").startswith(FUNCTION_ERROR_PREFIX):
            result.function_errors += _int(row.get("Failure Count"))
            name = row["Name"]
            result.failures_by_error[name] = _int(row.get("Failure Count"))
    for row in _rows(Path(f"{csv_prefix}_failures.csv")):
        name = row.get("Name") or ""
        if not name.startswith(FUNCTION_ERROR_PREFIX):
            key = f"{name}: {row.get('Error', '')}"
            result.failures_by_error[key] = (result.failures_by_error.get(key, 0)
                                             + _int(row.get("Occurrences")))
    return result


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as file:
            return list(csv.DictReader(file))
    except OSError:
        return []


def _int(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0


def _float(text: str | None) -> float | None:
    try:
        value = float(text or "nan")
    except ValueError:
        return None
    return None if math.isnan(value) else value
