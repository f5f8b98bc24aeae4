"""The load: Locust in its own process (`forkric.soak.loadrun`), bounded by its duration and
by a deadline of ours, leaving Locust's numbers in a JSON file.

A separate process, because Locust monkey-patches the standard library with gevent on import:
the soak's sampler thread and subprocesses stay plain, and Locust gets a CPU of its own. Locust
as a library there, not its command line: its CSV files are rewritten once a second by a
greenlet, not at exit, so their last numbers may be a second old.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_ALLOWANCE_S = 30.0  # importing Locust and gevent, spawning the users
STOP_GRACE_S = 10.0
FUNCTION_ERROR_PREFIX = "function error: "  # the locustfile's (importing it imports Locust)


@dataclass(frozen=True)
class LoadPlan:
    host: str
    users: int
    duration_s: float
    event: str  # inline JSON or @file, as the locustfile takes it
    result_path: Path
    log_path: Path
    invoke_timeout_s: float = 60.0

    @property
    def deadline_s(self) -> float:
        """How long the Locust process may take in all, before it is killed."""
        return self.duration_s + STARTUP_ALLOWANCE_S + STOP_GRACE_S + self.invoke_timeout_s


@dataclass
class LoadResult:
    invocations: int = 0
    failures: int = 0
    function_errors: int = 0
    failures_by_error: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    requests_per_s: float = 0.0
    exit_code: int | None = None
    elapsed_s: float | None = None  # how long the load ran, as Locust timed it


def load_argv(plan: LoadPlan) -> list[str]:
    return [sys.executable, "-m", "forkric.soak.loadrun", "--host", plan.host,
            "--users", str(plan.users), "--duration", f"{plan.duration_s:g}",
            "--event", plan.event, "--invoke-timeout", f"{plan.invoke_timeout_s:g}",
            "--out", str(plan.result_path)]


def start(plan: LoadPlan) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    log_file = plan.log_path.open("wb")
    try:
        return subprocess.Popen(load_argv(plan), env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log_file.close()


def stop(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> int:
    """Interrupt the load; kill it past the grace."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def read_result(path: Path, exit_code: int | None = None) -> LoadResult:
    """The totals, the failures by kind and the latency percentiles Locust computed."""
    result = LoadResult(exit_code=exit_code)
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return result  # the load did not finish: nothing measured
    total = found["total"]
    result.elapsed_s = found.get("elapsed_s")
    result.invocations = total["requests"]
    result.failures = total["failures"]
    result.requests_per_s = round(total["requests_per_s"], 1)
    result.latency_ms = total["latency_ms"]
    for entry in found["entries"]:
        if entry["name"].startswith(FUNCTION_ERROR_PREFIX) and entry["failures"]:
            result.function_errors += entry["failures"]
            result.failures_by_error[entry["name"]] = entry["failures"]
    for error in found["errors"]:
        if not error["name"].startswith(FUNCTION_ERROR_PREFIX):
            key = f"{error['name']}: {error['error']}"
            result.failures_by_error[key] = error["occurrences"]
    return result
