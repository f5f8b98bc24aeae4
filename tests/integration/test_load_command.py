"""`forkric load` from a folder of the user's own (issue 13, items 3 and 6): it waits for forkric
local to be ready, runs Locust with forkric's users, mixes events by weight, and names failures
by their error type and message."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.local import local
from tests.support.locust import web_ui_options
from tests.support.rie import base_env

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_headless_mix_of_two_events_from_another_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"  # the user's own folder: no locustfile, no clone
    work.mkdir()
    (work / "ok.json").write_text('{"crash_rate": 0}')
    (work / "fails.json").write_text('{"crash_rate": 1, "crash_how": "raise"}')
    with local("loadtest.handlers.crashy.handler", REPO, workers=2, timeout=5,
               wait_ready=False, log_path=tmp_path / "log") as service:
        done = subprocess.run(
            [sys.executable, "-m", "forkric", "load", "--port", str(service.port),
             "--headless", "--users", "4", "--duration", "4",
             "--event", "@ok.json:3", "--event", "@fails.json:1",
             "--", "--csv", "out/run", "--only-summary", "--stop-timeout", "5"],
            cwd=work, env=base_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]  # Locust's status: some calls failed
    stats = {row["Name"]: row for row in rows(work / "out" / "run_stats.csv")}
    total = int(stats["Aggregated"]["Request Count"])
    failed = int(stats["function error: CrashyError"]["Failure Count"])
    assert total > 40
    assert int(stats["invoke"]["Failure Count"]) == 0
    assert 0.1 < failed / total < 0.45, (failed, total)  # one call in four asked to fail
    errors = rows(work / "out" / "run_failures.csv")
    assert [row["Error"] for row in errors] == [
        "CrashyError: the crashy handler failed on purpose"]


def test_the_event_from_standard_input(tmp_path: Path) -> None:
    """`--event @-`, as `forkric invoke --payload @-` (it was read as a file named '-')."""
    with local("loadtest.handlers.crashy.handler", REPO, workers=1, timeout=5,
               log_path=tmp_path / "log") as service:
        done = subprocess.run(
            [sys.executable, "-m", "forkric", "load", "--port", str(service.port),
             "--headless", "--users", "1", "--duration", "2", "--event", "@-",
             "--", "--csv", str(tmp_path / "run"), "--only-summary", "--stop-timeout", "5"],
            cwd=tmp_path, env=base_env(), input='{"crash_rate": 1, "crash_how": "raise"}',
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]  # every call failed, as the event asks
    stats = {row["Name"]: row for row in rows(tmp_path / "run_stats.csv")}
    assert int(stats["function error: CrashyError"]["Failure Count"]) > 0
    assert "invoke" not in stats or int(stats["invoke"]["Request Count"]) == 0


def test_a_dead_runtime_is_named_by_type_and_message(tmp_path: Path) -> None:
    with local("loadtest.handlers.crashy.handler", REPO, workers=2, timeout=5,
               log_path=tmp_path / "log") as service:
        done = subprocess.run(
            [sys.executable, "-m", "forkric", "load", "--port", str(service.port),
             "--headless", "--users", "2", "--duration", "3",
             "--event", '{"crash_rate": 0.2, "crash_how": "kill"}',
             "--", "--csv", str(tmp_path / "run"), "--only-summary", "--stop-timeout", "5"],
            cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = {row["Error"] for row in rows(tmp_path / "run_failures.csv")}
    # One row for all of them: the request ids in the message are masked.
    assert errors == {"Runtime.ExitError: RequestId: <request id> Error: Runtime exited with "
                      "error: signal: killed"}


def test_the_web_ui_listens_on_loopback_with_the_options(tmp_path: Path) -> None:
    # forkric load binds the UI to 127.0.0.1 itself: web_ui_options reads it there.
    options = web_ui_options(
        [sys.executable, "-m", "forkric", "load", "--port", "9", "--wait-ready", "0",
         "--event", '{"k": 1}'], tmp_path, ["--"])
    assert options["extra_options"]["event"]["default_value"] == '{"k": 1}'
    assert options["host"] == "http://127.0.0.1:9"


def test_plain_locust_with_a_bad_event_stops_at_once(tmp_path: Path) -> None:
    """The repository's locustfile, run by Locust itself from another folder: a bad event is one
    line and exit status 2 before any user starts (it was a traceback, then a whole run of 0
    requests)."""
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"),
         "--headless", "-u", "1", "-t", "30s", "--host", "http://127.0.0.1:9",
         "--event", "@missing.json"],
        cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "locust: bad --event: @missing.json: No such file or directory\n" in done.stderr
    assert "Traceback" not in done.stderr
