"""SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): forkric against awslambdaric 4.2.2.

The RIE does not serve `/runtime/restore/next` (it answers 404), so the snapshot phase itself runs
against the Runtime API double in tests/support/fake_runtime_api.py, which answers it; both
runtimes run against it with the same handler and environment, and what each posts is compared.
The 404 of the real RIE is compared under the RIE (tests/interop/test_lambda_surface.py), and
`forkric local --snap-start` with one and four workers in tests/integration/test_local_surface.py.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime import start, stop, wait_with_usage
from tests.support import differential, fake_runtime_api

pytestmark = pytest.mark.timeout(120)
HANDLER = "snapstart_hooks.handler"
BEFORE = ["before:registered-second:cache!", "before:registered-first"]
AFTER = ["after:registered-first", "after:registered-second:db"]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return differential.task_root(tmp_path_factory.mktemp("snapstart") / "task")


@dataclass
class Run:
    code: int | None  # None: still serving when stopped
    posted: list[fake_runtime_api.Posted]
    restore_calls: int
    output: str

    def error(self) -> tuple[str, str | None, dict[str, Any]]:
        assert len(self.posted) == 1, self
        posted = self.posted[0]
        body = posted.json()
        # awslambdaric's trace starts in its hooks runner; forkric leaves its own frames out.
        body["stackTrace"] = [f for f in body["stackTrace"] if "awslambdaric" not in f]
        return posted.path, posted.headers.get("lambda-runtime-function-error-type"), body


def serve(module: str, task_dir: Path, workers: int = 1, restore_status: int = 200,
          fails: bool = False, **env: str) -> Run:
    """Run one runtime against the double; when it `fails`, wait for it to exit by itself."""
    with fake_runtime_api.serve() as api:
        api.restore_status = restore_status
        if not fails:
            for index in range(workers):
                api.queue_invocation({}, request_id=f"request-{index}")
        extra = {"FORKRIC_WORKERS": str(workers)} if module == "forkric" else {}
        process = start(module, [HANDLER], task_dir, differential.env_for(
            task_dir, AWS_LAMBDA_RUNTIME_API=api.address,
            AWS_LAMBDA_INITIALIZATION_TYPE="snap-start", **extra, **env))
        code: int | None = None
        if fails:
            code, _, raw = wait_with_usage(process, 60)
        else:
            try:
                posted = [api.wait_posted(30) for _ in range(workers)]
            finally:
                raw = stop(process)
        if fails:
            posted = []
            while not api.posted.empty():
                posted.append(api.posted.get())
        return Run(code, posted, len(api.restore_calls), raw.decode(errors="replace"))


def both(task_dir: Path, **kwargs: Any) -> dict[str, Run]:
    return {module: serve(module, task_dir, **kwargs) for module in differential.RUNTIMES}


def error_line(output: str) -> str:
    """The first part of the unhandled error's log line ([ERROR] Type: message)."""
    return next(line for line in output.split("\n") if line.startswith("[ERROR]")).split("\r")[0]


def test_hooks_run_in_order_then_restore(task_dir: Path) -> None:
    runs = both(task_dir, FORKRIC_IMPORT_MODE="once")  # the per-worker mode: test_local_surface
    for name, run in runs.items():
        assert run.restore_calls == 1, (name, run)
        assert [p.path for p in run.posted] == ["/invocation/request-0/response"], (name, run)
        result = run.posted[0].json()
        assert [entry[0] for entry in result["ran"]] == BEFORE + AFTER, (name, result)
    ours, peer = (runs[m].posted[0].json() for m in differential.RUNTIMES)
    # awslambdaric runs the hooks in the process that serves; forkric in the supervisor, which
    # then forks the worker that serves.
    assert {pid for _, pid in peer["ran"]} == {peer["pid"]}
    assert {pid for _, pid in ours["ran"]} == {ours["ppid"]}


def test_four_workers_fork_after_the_restore(task_dir: Path) -> None:
    run = serve("forkric", task_dir, workers=4, FORKRIC_IMPORT_MODE="once")
    assert run.restore_calls == 1, run
    results = [p.json() for p in run.posted]
    # Which of the four workers serves which invocation is the Runtime API's choice: one fast
    # worker may take two. All are forks of the one supervisor that ran the hooks.
    assert 1 <= len({r["pid"] for r in results}) <= 4, results
    assert len({r["ppid"] for r in results}) == 1, results
    for result in results:
        # Each worker holds what every hook did, after-restore ones included, so it was forked
        # after them; and they ran once, in the supervisor.
        assert [entry[0] for entry in result["ran"]] == BEFORE + AFTER, result
        assert {pid for _, pid in result["ran"]} == {result["ppid"]}


@pytest.mark.parametrize(("fail", "error_type", "message"), [
    ("before", "ValueError", "flush failed before the snapshot"),
    ("exit", "SystemExit", "3"),
])
def test_before_snapshot_error(task_dir: Path, fail: str, error_type: str, message: str) -> None:
    runs = both(task_dir, fails=True, SNAP_FAIL=fail)
    ours, peer = runs["forkric"], runs["awslambdaric"]
    assert ours.error() == peer.error(), runs
    path, header, body = ours.error()
    assert (path, header) == ("/init/error", "Runtime.BeforeSnapshotError")
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == (
        error_type, message, "")
    assert "snapstart_hooks.py" in body["stackTrace"][0]
    assert ours.code == peer.code == 64, runs
    assert ours.restore_calls == peer.restore_calls == 0
    assert error_line(ours.output) == error_line(peer.output) == f"[ERROR] {error_type}: {message}"


def test_after_restore_error(task_dir: Path) -> None:
    runs = both(task_dir, fails=True, SNAP_FAIL="after")
    ours, peer = runs["forkric"], runs["awslambdaric"]
    assert ours.error() == peer.error(), runs
    path, header, body = ours.error()
    assert (path, header) == ("/restore/error", "Runtime.AfterRestoreError")
    assert body["errorType"] == "ConnectionError"
    assert ours.code == peer.code == 65, runs
    assert ours.restore_calls == peer.restore_calls == 1
    assert error_line(ours.output) == error_line(peer.output)


@pytest.mark.parametrize("status", [404, 500])
def test_restore_next_refused(task_dir: Path, status: int) -> None:
    """What the RIE does (404), and a 500: a before-snapshot error named after awslambdaric's
    client exception, worded as it words it."""
    runs = both(task_dir, fails=True, restore_status=status)
    ours, peer = runs["forkric"], runs["awslambdaric"]
    _, _, peer_body = peer.error()
    path, header, body = ours.error()
    assert (path, header) == ("/init/error", "Runtime.BeforeSnapshotError")
    assert body["errorType"] == peer_body["errorType"] == "LambdaRuntimeClientError"
    assert body["errorMessage"] == peer_body["errorMessage"], runs
    assert f"Reason: '{status}'" in body["errorMessage"]
    assert ours.code == peer.code == 64


def test_no_snapshot_phase_without_snap_start(task_dir: Path) -> None:
    with fake_runtime_api.serve() as api:
        api.queue_invocation({}, request_id="request-0")
        process: subprocess.Popen[bytes] = start("forkric", [HANDLER], task_dir,
                                                 differential.env_for(
                                                     task_dir, AWS_LAMBDA_RUNTIME_API=api.address))
        try:
            result = api.wait_posted(30).json()
        finally:
            stop(process)
    assert api.restore_calls == []
    assert result["ran"] == []
    assert json.dumps(result)
