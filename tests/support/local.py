"""`forkric local` as a test peer: started on ephemeral ports, its output in a file."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support.rie import Reply, base_env, invoke

T = TypeVar("T")
_LISTENING = re.compile(r"Invoke API on http://[^:]+:(\d+)/")
_RUNTIME = re.compile(r"Runtime API on 127\.0\.0\.1:(\d+)")


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Poll until `condition()` is truthy; its value. A poll, not a sleep standing in for one."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout} s")
        time.sleep(interval)


@dataclass
class Local:
    process: subprocess.Popen
    port: int
    runtime_port: int
    log_path: Path

    def invoke(self, payload: Any = None, **kwargs: Any) -> Reply:
        return invoke(self.port, payload, **kwargs)

    def status(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/status")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self, workers: int) -> dict[str, Any]:
        """Wait until `workers` workers long-poll the Runtime API."""
        return wait_for(lambda: (s := self.status())["pollers"] >= workers and s, 30,
                        f"{workers} worker(s) polling")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


@contextlib.contextmanager
def local(handler: str, task_dir: Path, *args: str, workers: int = 2, timeout: float = 3.0,
          env: Mapping[str, str] | None = None, log_path: Path | None = None,
          wait_ready: bool = True, python: str | Path | None = None,
          max_fds: int | None = None) -> Iterator[Local]:
    """`forkric local HANDLER` in `task_dir` on an ephemeral port, stopped on leaving; run by
    `python` (default: this interpreter), which its runtime child runs on too; with at most
    `max_fds` file descriptors if given."""
    log_path = log_path or Path(tempfile.mkdtemp(prefix="forkric-local-test-")) / "local.log"
    argv = [str(python or sys.executable), "-m", "forkric", "local", handler, "--port", "0",
            "--workers", str(workers), "--timeout", str(timeout), *args]
    full_env = base_env(**(env or {}))
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, cwd=task_dir, env=full_env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=None if max_fds is None else
                                   lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                              (max_fds, max_fds)))
    service: Local | None = None
    try:
        text = wait_for(lambda: _listening(log_path, process), 30, "forkric local listening")
        service = Local(process, int(_LISTENING.findall(text)[0]),
                        int(_RUNTIME.findall(text)[0]), log_path)
        if wait_ready:
            service.ready(workers)
        yield service
    finally:
        if service is not None:
            service.stop()
        elif process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _listening(log_path: Path, process: subprocess.Popen) -> str:
    text = log_path.read_text(errors="replace")
    if _LISTENING.search(text) and _RUNTIME.search(text):
        return text
    if process.poll() is not None:
        raise RuntimeError(f"forkric local exited with {process.returncode}:\n{text}")
    return ""
