"""`python -m forkric` as a real process: start-up, path set-up, Runtime API failures, telemetry fd.

Most cases run under the real RIE. Some need what the RIE cannot give, and use the small stdlib
Runtime API in tests/support/fake_runtime_api.py instead: a Runtime API answering 500 (the RIE
never does), a trace id header (the classic RIE sends none), and `_LAMBDA_TELEMETRY_LOG_FD` (the
RIE provides no such fd; the test passes a pipe to the runtime with pass_fds and reads the frames).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import differential, fake_runtime_api, rie

pytestmark = pytest.mark.timeout(120)
PYTHON = sys.executable


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return differential.task_root(tmp_path_factory.mktemp("runtime") / "task")


def start(module: str, args: list[str], cwd: Path, env: Mapping[str, str],
          pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, "-m", module, *args], cwd=cwd, env=dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                            start_new_session=True)


def wait_with_usage(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, float, bytes]:
    """Wait for the process (bounded), returning its exit status, the CPU seconds of it and its
    reaped descendants (wait4's rusage covers both; psutil cannot read the CPU time of a
    process that has already exited), and its output."""
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(process.pid, 0)
            reader.join(5)
            raise AssertionError(f"still running after {timeout} s: {b''.join(output)!r}")
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    return process.returncode, usage.ru_utime + usage.ru_stime, b"".join(output)


def stop(process: subprocess.Popen[bytes]) -> bytes:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return out


# Path set-up and handler name, under the real RIE.

def test_task_root_defaults_to_working_directory(task_dir: Path) -> None:
    env = rie.base_env()
    assert "LAMBDA_TASK_ROOT" not in env
    with rie.classic([PYTHON, "-m", "forkric", "contexts.handler"], task_dir, env) as emulator:
        reply = emulator.invoke({})
    assert reply.status == 200, reply.body
    assert reply.json()["env"]["LAMBDA_TASK_ROOT"] == str(task_dir)


def _pth_task(root: Path, with_pth: bool) -> Path:
    root.mkdir()
    vendor = root / "vendor"
    vendor.mkdir()
    (vendor / "vendored_corpus_mod.py").write_text("VALUE = 'from vendor via .pth'\n")
    (root / "uses_pth.py").write_text(
        "import vendored_corpus_mod\n\n\ndef handler(event, context):\n"
        "    return vendored_corpus_mod.VALUE\n")
    if with_pth:
        (root / "corpus-vendor.pth").write_text("vendor\n")
    return root


def test_pth_files_in_task_root_are_honoured(tmp_path: Path) -> None:
    with_pth = _pth_task(tmp_path / "with", with_pth=True)
    without = _pth_task(tmp_path / "without", with_pth=False)
    command = [PYTHON, "-m", "forkric", "uses_pth.handler"]
    with rie.classic(command, with_pth, differential.env_for(with_pth)) as emulator:
        reply = emulator.invoke({})
    assert (reply.status, reply.json()) == (200, "from vendor via .pth")
    with rie.classic(command, without, differential.env_for(without)) as emulator:
        reply = emulator.invoke({})
    assert reply.status == 502
    assert reply.json()["errorType"] == "Runtime.ImportModuleError"


def test_handler_from_env_when_no_argument(task_dir: Path) -> None:
    with fake_runtime_api.serve() as api:
        request_id = api.queue_invocation({"from": "_HANDLER"})
        process = start("forkric", [], task_dir, differential.env_for(
            task_dir, AWS_LAMBDA_RUNTIME_API=api.address, _HANDLER="echo.handler"))
        try:
            posted = api.wait_posted()
        finally:
            stop(process)
    assert posted.path == f"/invocation/{request_id}/response"
    assert posted.json() == {"type": "dict", "repr": "{'from': '_HANDLER'}"}


def test_missing_runtime_api_is_a_usage_error(task_dir: Path) -> None:
    process = start("forkric", ["echo.handler"], task_dir, differential.env_for(task_dir))
    code, _, output = wait_with_usage(process, 30)
    assert code == 2, output
    # One line in the user's terms, as every usage error of every command.
    assert output.strip().splitlines()[-1] == (
        b"forkric run: AWS_LAMBDA_RUNTIME_API is not set: it names the Runtime API to poll "
        b"(use `forkric local` for a local one)")


# Runtime API failures.

def test_unreachable_runtime_api_backs_off_and_exits(task_dir: Path) -> None:
    port = rie.free_port()  # nothing listens there
    started = time.monotonic()
    process = start("forkric", ["echo.handler"], task_dir, differential.env_for(
        task_dir, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}"))
    code, cpu_s, output = wait_with_usage(process, 60)
    elapsed = time.monotonic() - started
    text = output.decode(errors="replace")
    assert code != 0, text
    assert elapsed < 45, elapsed
    # Backoff, not a busy loop: the whole run (interpreter start, imports, fork, every retry)
    # stays well under a second of CPU.
    assert cpu_s < 1.5, (cpu_s, elapsed)
    assert text.count("GET /next failed") == 1, text
    assert "could not be reached" in text


def test_runtime_api_500_ends_the_runtime(task_dir: Path) -> None:
    # A fake: the RIE never answers 500, which is how Lambda asks a runtime to exit.
    with fake_runtime_api.serve(next_status=500) as api:
        process = start("forkric", ["echo.handler"], task_dir, differential.env_for(
            task_dir, AWS_LAMBDA_RUNTIME_API=api.address))
        code, _, output = wait_with_usage(process, 30)
    assert code != 0, output
    assert api.next_calls == 1, (api.next_calls, output)
    assert b"500" in output


# Differential, against the fake Runtime API: what the RIE cannot send.

def _serve_both(task_dir: Path, handler: str, invocations: list[tuple[Any, dict[str, str]]],
                env: Mapping[str, str] | None = None,
                telemetry: bool = False) -> dict[str, tuple[list[Any], list[tuple[int, str]]]]:
    """Run each runtime against its own fake Runtime API with the same invocations (fixed
    request ids); return what each posted and, with `telemetry`, the frames it wrote."""
    seen = {}
    error_types: dict[str, list[str | None]] = {}
    for module in differential.RUNTIMES:
        read_fd = write_fd = -1
        extra = dict(env or {})
        if telemetry:
            read_fd, write_fd = os.pipe()
            extra["_LAMBDA_TELEMETRY_LOG_FD"] = str(write_fd)
        with fake_runtime_api.serve() as api:
            for index, (event, headers) in enumerate(invocations):
                api.queue_invocation(event, headers, request_id=f"request-{index}")
            process = start(module, [handler], task_dir, differential.env_for(
                task_dir, AWS_LAMBDA_RUNTIME_API=api.address, **extra),
                pass_fds=(write_fd,) if telemetry else ())
            frames: list[tuple[int, str]] = []
            try:
                if telemetry:
                    os.close(write_fd)
                    chunks: list[bytes] = []
                    reader = threading.Thread(target=_read_all, args=(read_fd, chunks),
                                              daemon=True)
                    reader.start()
                posted = [api.wait_posted() for _ in invocations]
            finally:
                output = stop(process)
            if telemetry:
                reader.join(10)
                frames = _frames(b"".join(chunks))
        seen[module] = ([(p.path, p.headers.get("lambda-runtime-function-xray-error-cause"),
                          p.json()) for p in posted], frames)
        error_types[module] = [p.headers.get("lambda-runtime-function-error-type")
                               for p in posted]
        assert posted, output
    # Known difference, pinned: awslambdaric 4.2.2's native client posts invocation errors
    # without the Lambda-Runtime-Function-Error-Type header; forkric sends the error type there.
    assert all(kind is None for kind in error_types["awslambdaric"]), error_types
    assert error_types["forkric"] == [
        body.get("errorType") if path.endswith("/error") else None
        for path, _, body in seen["forkric"][0]], error_types
    return seen


def _read_all(fd: int, chunks: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as pipe:
        while data := pipe.read(65536):
            chunks.append(data)


def _frames(data: bytes) -> list[tuple[int, str]]:
    frames, now_us, offset = [], time.time_ns() // 1000, 0
    while offset < len(data):
        kind, length, stamp = struct.unpack_from(">IIQ", data, offset)
        offset += 16
        text = data[offset:offset + length].decode()
        offset += length
        assert 0 < now_us - stamp < 120_000_000, (stamp, now_us)  # microseconds, recent
        frames.append((kind, differential.ISO_TIME.sub("<time>", text)))
    return frames


TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_trace_id_client_context_and_identity(task_dir: Path) -> None:
    client_context = {"custom": {"name": "Grüße"}, "client": {"app_title": "t"},
                      "env": {"e": 1}, "w3c": {"traceparent": "00-1-2-01"}}
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    invocations = [
        ({"n": 1}, {"Lambda-Runtime-Trace-Id": TRACE}),
        ({"n": 2}, {}),  # no trace id: the variable is removed again
        ({"n": 3}, {"Lambda-Runtime-Client-Context": json.dumps(client_context,
                                                                 ensure_ascii=False),
                    "Lambda-Runtime-Cognito-Identity": json.dumps(identity),
                    "Lambda-Runtime-Aws-Tenant-Id": "tenant-a"}),
        ({"n": 4}, {"Lambda-Runtime-Client-Context": "{not json"}),
    ]
    seen = _serve_both(task_dir, "contexts.handler", invocations)
    ours, peer = seen["forkric"][0], seen["awslambdaric"][0]
    assert ours == peer
    assert ours[0][2]["env"]["_X_AMZN_TRACE_ID"] == TRACE
    assert ours[1][2]["env"]["_X_AMZN_TRACE_ID"] is None
    assert ours[2][2]["tenant_id"] == "tenant-a"
    assert ours[3][2]["errorType"] == "Runtime.LambdaContextUnmarshalError"


TELEMETRY_ENVS = {
    "text": {},
    "text_info": {"AWS_LAMBDA_LOG_LEVEL": "INFO"},
    "json": {"AWS_LAMBDA_LOG_FORMAT": "JSON"},
    "json_debug": {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"},
}


@pytest.fixture(params=sorted(TELEMETRY_ENVS))
def telemetry_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield TELEMETRY_ENVS[request.param]


def test_telemetry_fd_frames(task_dir: Path, telemetry_env: dict[str, str]) -> None:
    invocations: list[tuple[Any, dict[str, str]]] = [
        ({"case": case}, {}) for case in ("levels", "exception", "extra", "context_log")]
    seen = _serve_both(task_dir, "logging_cases.handler", invocations, telemetry_env,
                       telemetry=True)
    ours, peer = seen["forkric"], seen["awslambdaric"]
    assert ours[0] == peer[0]
    our_frames = differential.without_start_line_frames(ours[1])
    assert our_frames == peer[1]
    assert our_frames, "no frames at all"
    assert {kind >> 16 for kind, _ in our_frames} == {0xA55A}


def test_telemetry_fd_error_frame(task_dir: Path, telemetry_env: dict[str, str]) -> None:
    seen = _serve_both(task_dir, "failures.handler", [({"case": "non_ascii"}, {})],
                       telemetry_env, telemetry=True)
    ours, peer = seen["forkric"], seen["awslambdaric"]
    assert ours[0] == peer[0]
    our_frames = differential.without_start_line_frames(ours[1])
    assert our_frames == peer[1]
    error_kind = 0xA55A0016 if "AWS_LAMBDA_LOG_FORMAT" in telemetry_env else 0xA55A0017
    assert [kind for kind, _ in our_frames] == [error_kind]
