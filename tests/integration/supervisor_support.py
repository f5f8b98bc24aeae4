"""forkric's supervisor run by the real RIE in managed-instances mode, as Lambda runs it."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


def runtime_python() -> tuple[Path, str]:
    """The runtime's interpreter, of the tests' own Python version, where the RIE's uid 993 can
    run it: Debian's when it is that version, else pyenv's copied (the Python 3.13 tier). The
    bootstrap line a copied interpreter needs goes with it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    debian = subprocess.run([str(rie.DEBIAN_PYTHON), "-c", "import sys; print(sys.version[:4])"],
                            capture_output=True, text=True).stdout.strip()
    if debian.rstrip(".") == version:
        return rie.system_python(), ""
    base = rie.readable_python(version)
    if base is None:
        pytest.skip(f"SKIPPED LOUDLY: no CPython {version} that the RIE's uid 993 can run "
                    "(Debian's is another version and pyenv has none)")
    return rie.system_python(base=base), rie.library_path_line(base)


@contextlib.contextmanager
def runtime(app: str, workers: int, **env: str) -> Iterator[Runtime]:
    """The RIE in LMI mode running the project's runtime on `apps/<app>.py`."""
    python, library_line = runtime_python()
    root = rie.readable_dir("sup-")
    task, scratch = root / "task", root / "scratch"
    task.mkdir()
    scratch.mkdir()
    scratch.chmod(0o777)
    shutil.copy(APPS / f"{app}.py", task / f"{app}.py")
    rie.write_bootstrap(root / "runtime", python, extra=library_line)
    full_env = rie.base_env(**{"_HANDLER": f"{app}.handler", **env})
    try:
        with rie.managed_instances(root / "runtime", task, workers, env=full_env) as emulator:
            yield Runtime(emulator, scratch, task)
    finally:
        shutil.rmtree(root, ignore_errors=True)
