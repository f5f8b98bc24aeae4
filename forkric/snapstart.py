"""SnapStart: the before-snapshot hooks, the snapshot, the after-restore hooks; then the fork.

As awslambdaric 4.2.2 does it (bootstrap.on_init_complete, lambda_runtime_hooks_runner) when
`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, after the handler's import:
- the hooks registered with `snapshot_restore_py.register_before_snapshot` run, the last
  registered first (each popped off the library's list), then `GET /runtime/restore/next` blocks
  while Lambda takes the snapshot and returns once it is restored. Any exception there, the
  call's own included, is logged as an unhandled error, reported to `/runtime/init/error` with the
  header `Lambda-Runtime-Function-Error-Type: Runtime.BeforeSnapshotError` (the body keeps the
  exception's own class name), and the runtime exits 64;
- the hooks registered with `register_after_restore` run in their order of registration; an
  exception is logged, reported to `/runtime/restore/error` as `Runtime.AfterRestoreError`, and
  the runtime exits 65.

forkric runs all of this once, in the supervisor, before it forks: the snapshot holds one
process, and every worker starts from the restored state (see the README's SnapStart section).
In the per-worker import mode a worker imports the handler again after the restore; it then runs
its own hooks (`run_own_hooks`), so that its state is what a process of awslambdaric holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import snapshot_restore_py  # type: ignore[import-untyped]

from forkric import errors
from forkric.logs import Logs
from forkric.runtime_api import RuntimeAPI

INITIALIZATION_TYPE_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"
SNAP_START = "snap-start"
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"
EXIT_BEFORE_SNAPSHOT = 64  # awslambdaric's exit statuses
EXIT_AFTER_RESTORE = 65

log = logging.getLogger("forkric")


def requested(environ: Mapping[str, str]) -> bool:
    return environ.get(INITIALIZATION_TYPE_ENV) == SNAP_START


def run_before_snapshot() -> None:
    """The before-snapshot hooks, last registered first; each is taken off the list as it runs,
    so a hook that fails leaves the ones registered before it unrun."""
    hooks: list[Any] = snapshot_restore_py.get_before_snapshot()
    while hooks:
        function, args, kwargs = hooks.pop()
        function(*args, **kwargs)


def run_after_restore() -> None:
    """The after-restore hooks, in their order of registration."""
    hooks: list[Any] = snapshot_restore_py.get_after_restore()
    for function, args, kwargs in hooks:
        function(*args, **kwargs)


def forget_hooks() -> None:
    """Empty both hook lists: a worker about to import the handler again registers its own."""
    snapshot_restore_py.get_before_snapshot().clear()
    snapshot_restore_py.get_after_restore().clear()


def run_own_hooks(environ: Mapping[str, str]) -> None:
    """In a worker that imported the handler itself (per-worker import mode), after the restore:
    its own hooks, before-snapshot then after-restore, so that its module state is what
    awslambdaric's process holds after its restore. The snapshot itself was taken once, in the
    supervisor, whose run of the same hooks reported their errors. Raises what a hook raises."""
    if requested(environ):
        run_before_snapshot()
        run_after_restore()


def _error(exc: BaseException, logs: Logs) -> dict[str, Any]:
    error, _ = errors.from_exception(exc)
    logs.error(error)
    return error


def snapshot_and_restore(runtime_api: str, logs: Logs) -> int:
    """The snapshot phase; 0 once restored, else the exit status after the error was reported.

    Like awslambdaric, any exception counts, SystemExit and KeyboardInterrupt included. The
    Runtime API connection is closed before returning: the workers forked next open their own.
    """
    api = RuntimeAPI(runtime_api, next_retries=0)
    try:
        try:
            run_before_snapshot()
            api.restore_next()
        except BaseException as exc:
            _report(lambda error: api.post_init_error(error, BEFORE_SNAPSHOT_ERROR),
                    _error(exc, logs))
            return EXIT_BEFORE_SNAPSHOT
        try:
            run_after_restore()
        except BaseException as exc:
            _report(lambda error: api.post_restore_error(error, AFTER_RESTORE_ERROR),
                    _error(exc, logs))
            return EXIT_AFTER_RESTORE
        return 0
    finally:
        api.close()


def _report(post: Callable[[dict[str, Any]], object], error: dict[str, Any]) -> None:
    try:
        post(error)
    except Exception as failure:
        log.error("forkric: could not report the SnapStart error: %s", failure)
