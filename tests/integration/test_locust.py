"""loadtest/locustfile.py run by Locust (headless, and distributed) against `forkric local`:
no failures on a clean handler, function errors counted apart from the service's failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local import Local, local
from tests.support.locust import web_ui_options
from tests.support.rie import base_env, free_port

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """The crashy handler, which neither raises nor dies unless the event asks it to."""
    log_path = tmp_path_factory.mktemp("locust-local") / "local.log"
    with local("loadtest.handlers.crashy.handler", REPO, workers=2, timeout=5,
               log_path=log_path, env={"CRASH_RATE": "0"}) as running:
        yield running


def locust(port: int, out: Path, *args: str, seconds: int = 3) -> dict[str, dict[str, str]]:
    """A bounded headless run against 127.0.0.1:port; its statistics rows by name. (Locust
    rewrites its CSV files every second, not at exit: the counts may miss the last second.)"""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", f"http://127.0.0.1:{port}", "-u", "4", "-r", "4",
            "-t", f"{seconds}s", "--stop-timeout", "5", "--csv", str(out / "run"),
            "--only-summary", "--exit-code-on-error", "0", *args]
    done = subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, text=True,
                          timeout=seconds + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    return stats(out / "run_stats.csv")


def stats(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as file:
        return {row["Name"]: row for row in csv.DictReader(file)}


def count(row: dict[str, str], column: str) -> int:
    return int(row[column])


def test_headless_run_without_failures(service: Local, tmp_path: Path) -> None:
    rows = locust(service.port, tmp_path, "--event", '{"crash_rate": 0}')
    assert count(rows["invoke"], "Request Count") > 20
    assert count(rows["Aggregated"], "Failure Count") == 0
    assert set(rows) == {"invoke", "Aggregated"}


def test_function_errors_are_counted_apart(service: Local, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"crash_rate": 0.3, "crash_how": "raise"}')
    rows = locust(service.port, tmp_path, "--event", f"@{event}")
    errors = rows["function error: CrashyError"]
    assert count(errors, "Failure Count") == count(errors, "Request Count") > 0
    assert count(rows["invoke"], "Failure Count") == 0  # the service itself never failed
    assert count(rows["invoke"], "Request Count") > count(errors, "Request Count")


def test_a_dead_worker_is_a_function_error_too(service: Local, tmp_path: Path) -> None:
    rows = locust(service.port, tmp_path, "--event", '{"crash_rate": 0.1, "crash_how": "kill"}')
    died = rows["function error: Runtime.ExitError"]
    assert count(died, "Failure Count") > 0
    assert count(rows["invoke"], "Failure Count") == 0


def test_transport_failures_stay_under_invoke(tmp_path: Path) -> None:
    # Nothing listens on this port: every call is refused, and none is a function error.
    rows = locust(free_port(), tmp_path, seconds=2)
    assert count(rows["invoke"], "Failure Count") == count(rows["invoke"], "Request Count") > 0
    assert not any(name.startswith("function error") for name in rows)


def test_distributed_master_and_worker(service: Local, tmp_path: Path) -> None:
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
         "--master-host", "127.0.0.1", "--master-port", str(port)],
        cwd=REPO, env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        rows = locust(service.port, tmp_path, "--master", "--master-bind-host", "127.0.0.1",
                      "--master-bind-port", str(port), "--expect-workers", "1",
                      "--expect-workers-max-wait", "30",
                      "--event", '{"crash_rate": 0.5, "crash_how": "raise"}')
    finally:
        try:
            worker.wait(30)  # a worker leaves when its master quits
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    # The event was given to the master only: the worker's calls used it.
    assert count(rows["function error: CrashyError"], "Failure Count") > 5
    assert count(rows["invoke"], "Request Count") > 5
    assert count(rows["invoke"], "Failure Count") == 0


def test_web_ui_offers_the_invoke_options(tmp_path: Path) -> None:
    options = web_ui_options(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1",
         "--host", "http://127.0.0.1:9"], REPO)
    assert {"event", "function_name", "think_time", "invoke_timeout"} <= set(
        options["extra_options"])
    assert options["available_user_classes"] == ["InvokeUser"]


def test_a_slow_import_is_not_taken_off_the_run_time(tmp_path: Path) -> None:
    """Locust arms --run-time with gevent's clock as last read; a locustfile whose imports take
    2 s ended a `-t 3s` run after about 1 s (and with no CSV row on a busy machine)."""
    slow = tmp_path / "slow_locustfile.py"
    # Busy, as an import is (gevent has patched time.sleep, which would let its clock run).
    slow.write_text("import time\nstart = time.monotonic()\n"
                    "while time.monotonic() - start < 2:\n    pass\n"
                    "from loadtest.locustfile import InvokeUser  # noqa: F401\n")
    argv = [sys.executable, "-m", "locust", "-f", str(slow), "--headless",
            "--host", f"http://127.0.0.1:{free_port()}", "-u", "2", "-r", "2", "-t", "3s",
            "--stop-timeout", "5", "--only-summary", "--exit-code-on-error", "0",
            "--json-file", str(tmp_path / "stats")]
    done = subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    (entry,) = json.loads((tmp_path / "stats.json").read_text())
    # Refused calls return at once: calls were made from the start to the end of the run.
    assert entry["last_request_timestamp"] - entry["start_time"] >= 2.5, entry
