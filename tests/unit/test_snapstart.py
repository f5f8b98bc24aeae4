"""forkric.snapstart against awslambdaric 4.2.2's hooks runner, and against a Runtime API double
(tests/support/fake_runtime_api.py, in this process) for the calls and the error reports."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import snapshot_restore_py
from awslambdaric import lambda_runtime_hooks_runner

from forkric import snapstart
from forkric.logs import Logs
from tests.support import fake_runtime_api
from tests.support.rie import free_port


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Empty hook lists for the test; the calls each hook made, in order."""
    monkeypatch.setattr(snapshot_restore_py, "_before_snapshot_registry", [])
    monkeypatch.setattr(snapshot_restore_py, "_after_restore_registry", [])
    yield []


def _register(calls: list[str], fail: str = "") -> None:
    def hook(name: str, *, suffix: str = "") -> None:
        calls.append(name + suffix)
        if name == fail:
            raise ValueError(f"{name} failed")

    for name in ("b1", "b2", "b3"):
        snapshot_restore_py.register_before_snapshot(hook, name, suffix="!")
    for name in ("a1", "a2", "a3"):
        snapshot_restore_py.register_after_restore(hook, name)


@pytest.mark.parametrize("fail", ["", "b2", "a2"])
def test_hook_order_as_awslambdaric(registry: list[str], fail: str) -> None:
    outcomes = []
    for before, after in ((snapstart.run_before_snapshot, snapstart.run_after_restore),
                          (lambda_runtime_hooks_runner.run_before_snapshot,
                           lambda_runtime_hooks_runner.run_after_restore)):
        registry.clear()
        snapshot_restore_py._before_snapshot_registry.clear()
        snapshot_restore_py._after_restore_registry.clear()
        _register(registry, fail)
        failed = []
        for phase in (before, after):
            try:
                phase()
            except ValueError as exc:
                failed.append(str(exc))
        outcomes.append((list(registry), failed, len(snapshot_restore_py.get_before_snapshot())))
    assert outcomes[0] == outcomes[1]
    if not fail:
        assert outcomes[0][0] == ["b3!", "b2!", "b1!", "a1", "a2", "a3"]


def _logs() -> tuple[Logs, io.StringIO]:
    logs = Logs({})
    out = io.StringIO()
    logs.sink.log_error = lambda lines: out.write("\r".join(lines) + "\n")  # type: ignore[method-assign]
    return logs, out


def _phase(registry: list[str], restore_status: int = 200,
           register: Callable[[list[str]], None] = _register) -> tuple[int, Any, list[Any]]:
    register(registry)
    logs, out = _logs()
    with fake_runtime_api.serve() as api:
        api.restore_status = restore_status
        code = snapstart.snapshot_and_restore(api.address, logs)
        posted = []
        while not api.posted.empty():
            posted.append(api.posted.get())
        return code, (len(api.restore_calls), out.getvalue()), posted


def test_restored(registry: list[str]) -> None:
    code, (restores, logged), posted = _phase(registry)
    assert (code, restores, logged, posted) == (0, 1, "", [])
    assert registry == ["b3!", "b2!", "b1!", "a1", "a2", "a3"]


def test_before_snapshot_error(registry: list[str]) -> None:
    code, (restores, logged), posted = _phase(registry, register=lambda r: _register(r, "b2"))
    assert (code, restores) == (snapstart.EXIT_BEFORE_SNAPSHOT, 0)
    assert registry == ["b3!", "b2!"]
    [report] = posted
    assert report.path == "/init/error"
    assert report.headers["lambda-runtime-function-error-type"] == "Runtime.BeforeSnapshotError"
    body = report.json()
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == (
        "ValueError", "b2 failed", "")
    assert logged.startswith("[ERROR] ValueError: b2 failed\rTraceback (most recent call last):")


def test_after_restore_error(registry: list[str]) -> None:
    code, (restores, _), posted = _phase(registry, register=lambda r: _register(r, "a2"))
    assert (code, restores) == (snapstart.EXIT_AFTER_RESTORE, 1)
    assert registry == ["b3!", "b2!", "b1!", "a1", "a2"]
    [report] = posted
    assert report.path == "/restore/error"
    assert report.headers["lambda-runtime-function-error-type"] == "Runtime.AfterRestoreError"
    assert report.json()["errorType"] == "ValueError"


def test_restore_refused(registry: list[str]) -> None:
    code, (restores, _), posted = _phase(registry, restore_status=404)
    assert (code, restores) == (snapstart.EXIT_BEFORE_SNAPSHOT, 1)
    assert registry == ["b3!", "b2!", "b1!"]
    body = posted[0].json()
    assert body["errorType"] == "LambdaRuntimeClientError"
    assert body["errorMessage"] == ("Request to Lambda Runtime '/2018-06-01/runtime/restore/next' "
                                    "endpoint failed. Reason: '404'. Response body: 'b'''")


def test_unreachable_runtime_api_is_a_before_snapshot_error(registry: list[str]) -> None:
    logs, out = _logs()
    code = snapstart.snapshot_and_restore(f"127.0.0.1:{free_port()}", logs)
    assert code == snapstart.EXIT_BEFORE_SNAPSHOT
    assert out.getvalue().startswith("[ERROR] ConnectionRefusedError")


@pytest.mark.parametrize(("value", "expected"), [
    ("snap-start", True), ("on-demand", False), ("SNAP-START", False), ("", False)])
def test_requested(value: str, expected: bool) -> None:
    assert snapstart.requested({"AWS_LAMBDA_INITIALIZATION_TYPE": value}) is expected
