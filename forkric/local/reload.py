"""`forkric local --reload`: watch the task root's Python files with watchfiles (what uvicorn's
--reload uses: inotify through Rust's notify), and reload the handler when they change.

The reload itself is the supervisor's SIGHUP: the handler is imported again in the supervisor,
then its workers are replaced one at a time, none of them dropping an invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import watchfiles

DEBOUNCE_MS = 300  # an editor's save is several events: one reload for them all


class TaskRootFilter(watchfiles.PythonFilter):
    """watchfiles' PythonFilter (Python files only, outside `.venv`, `__pycache__`, `.git`,
    `node_modules`, `.mypy_cache`, `.pytest_cache`, `.tox`, ...), plus `venv`, `.nox`,
    `.ruff_cache`, `site-packages` and any virtual environment, whatever its name (a folder
    holding `pyvenv.cfg`): a `pip install` or a test run there is not an edit of the function.
    Folder names are matched below `root` only, so a task root that itself lies under, say,
    /srv/venv/ is still watched."""

    ignore_dirs = (*watchfiles.PythonFilter.ignore_dirs, "venv", ".nox", ".ruff_cache",
                   "site-packages")

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        super().__init__()

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        below = os.path.relpath(path, self.root)
        return super().__call__(change, below) and not self.in_virtualenv(path)

    def in_virtualenv(self, path: str) -> bool:
        """Whether a folder between `root` and `path` holds pyvenv.cfg (PEP 405's marker)."""
        folder = os.path.dirname(os.path.abspath(path))
        while folder.startswith(self.root + os.sep):
            if os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
                return True
            folder = os.path.dirname(folder)
        return False


@dataclass
class Watcher:
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def describe(changes: set[tuple[watchfiles.Change, str]], root: str) -> str:
    """'app.py changed', '3 files changed (app.py, lib.py, ...)'."""
    names = sorted({os.path.relpath(path, root) for _, path in changes})
    if len(names) == 1:
        return f"{names[0]} changed"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} files changed ({shown})"


def watch(root: str, on_change: Callable[[str], None]) -> Watcher:
    """Call `on_change(why)` after each batch of changes to Python files under `root` (its
    virtual environments, caches and VCS folders left out: see TaskRootFilter)."""
    stop_event = asyncio.Event()

    async def run() -> None:
        async for changes in watchfiles.awatch(root, watch_filter=TaskRootFilter(root),
                                               debounce=DEBOUNCE_MS, stop_event=stop_event):
            on_change(describe(changes, root))

    return Watcher(asyncio.get_running_loop().create_task(run()), stop_event)
