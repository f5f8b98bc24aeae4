"""A worker killed by the kernel's OOM killer: its invocation gets Runtime.OutOfMemory at once.

The runtime runs in a memory cgroup of its own with a small limit, under the real RIE (classic
mode, which runs the runtime command as root, so it can join the cgroup before exec)."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.supervisor_support import APPS, wait_for
from tests.support import rie

LIMIT = 160 * 2**20


def _memory_cgroup() -> Path | None:
    """A new child of this process's memory cgroup (v1 or v2) with a limit, if we may make one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent, limit_files = Path(f"/sys/fs/cgroup/memory{path}"), (
                "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
            break
        if controllers == "" and Path(f"/sys/fs/cgroup{path}/memory.max").exists():
            parent, limit_files = Path(f"/sys/fs/cgroup{path}"), ("memory.max",
                                                                  "memory.swap.max")
            break
    else:
        return None
    child = parent / f"forkric-oom-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        for name in limit_files:
            if (child / name).exists():
                (child / name).write_text("0" if name == "memory.swap.max" else str(LIMIT))
    except OSError:
        return None
    return child


@pytest.fixture
def cgroup() -> Iterator[Path]:
    child = _memory_cgroup()
    if child is None:
        pytest.skip("no writable memory cgroup on this machine")
    yield child
    wait_for(lambda: not (child / "cgroup.procs").read_text().strip(), 10, "cgroup empty")
    child.rmdir()


def test_oom_killed_worker_gets_out_of_memory_and_is_replaced(cgroup: Path,
                                                              tmp_path: Path) -> None:
    shutil.copy(APPS / "actions.py", tmp_path / "actions.py")
    command = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" -m forkric '
               "actions.handler", sys.executable]
    env = rie.base_env(AWS_LAMBDA_FUNCTION_TIMEOUT="60")
    with rie.classic(command, tmp_path, env=env) as emulator:
        body = emulator.invoke({"action": "oom"}).json()
        assert body["errorType"] == "Runtime.OutOfMemory", body
        assert body["errorMessage"].endswith("Runtime exited with error: signal: killed")
        after = emulator.invoke({}).json()
        assert after["held_kb"] == 0  # a fresh fork of the supervisor serves the next one
        members = {int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()}
        assert {after["ppid"], after["pid"]} <= members
