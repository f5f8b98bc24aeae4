"""forkric's supervisor run by the real RIE in managed-instances mode, as Lambda runs it."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import rie
from tests.support.local import wait_for

APPS = Path(__file__).parent / "apps"
EXIT_MESSAGE = re.compile(
    r"RequestId: (?P<id>[0-9a-f-]{36}) Error: Runtime exited with error: (?P<how>.+)")


def unavailable(reply: rie.Reply) -> bool:
    return reply.status == 400 and b"Runtime.Unavailable" in reply.body


@dataclass
class Runtime:
    emulator: rie.Emulator
    scratch: Path  # writable by the runtime's uid: markers go here
    task: Path

    def call(self, payload: Any = None, timeout: float = 20.0) -> rie.Reply:
        """One invocation; while no worker polls (a replacement is starting), try again."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.emulator.invoke(payload or {})
            if not unavailable(reply) or time.monotonic() > deadline:
                return reply
            time.sleep(0.02)

    def burst(self, count: int, payload: Any = None) -> list[rie.Reply]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.emulator.invoke(payload or {}), range(count)))

    def capacity(self, workers: int, timeout: float = 20.0) -> set[int]:
        """Wait until `workers` concurrent invocations all succeed; returns the workers' pids."""

        def full() -> set[int] | None:
            replies = self.burst(workers, {"action": "sleep", "seconds": 0.2})
            errors = [r.body for r in replies if "error-type" in r.headers]
            if errors:
                print("CAPACITY ERRORS", errors)
            if all(r.status == 200 and "error-type" not in r.headers for r in replies):
                pids = {r.json()["pid"] for r in replies}
                return pids if len(pids) == workers else None
            return None

        return wait_for(full, timeout, f"{workers} workers serving at once")

    def log(self) -> str:
        return self.emulator.log()


@contextlib.contextmanager
def runtime(app: str, workers: int, **env: str) -> Iterator[Runtime]:
    """The RIE in LMI mode running the project's runtime on `apps/<app>.py`."""
    python = rie.system_python()
    root = rie.readable_dir("sup-")
    task, scratch = root / "task", root / "scratch"
    task.mkdir()
    scratch.mkdir()
    scratch.chmod(0o777)
    shutil.copy(APPS / f"{app}.py", task / f"{app}.py")
    rie.write_bootstrap(root / "runtime", python)
    full_env = rie.base_env(**{"_HANDLER": f"{app}.handler", **env})
    try:
        with rie.managed_instances(root / "runtime", task, workers, env=full_env) as emulator:
            yield Runtime(emulator, scratch, task)
    finally:
        shutil.rmtree(root, ignore_errors=True)
