"""What an import of the handler in a process that imported it before (SIGHUP's reload in the
supervisor, the per-worker mode's import in a worker) must find as a fresh process would.

Two things outlive `forget_modules`, because they live in the standard library, not in the
user's modules: the `logging` configuration (a module that adds a handler at import adds it again,
and every record is then written once per import), and the threads the previous import started
(thread pools, log listeners), which keep running in the supervisor and are in the middle of
their work at the next fork (a listener holding its queue's lock leaves that lock held forever in
the child: the worker's next log call, and its invocation, hang).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from logging.handlers import QueueListener

THREAD_END_S = 2.0  # how long each of the previous import's threads may take to end


@dataclass
class LoggerState:
    handlers: list[logging.Handler]
    filters: list[Any]
    level: int
    propagate: bool
    disabled: bool


@dataclass
class LoggingState:
    """Each logger's handlers, filters, level, propagation; `logging.disable`'s level."""

    loggers: dict[str, LoggerState]
    disable: int


def _loggers() -> dict[str, logging.Logger]:
    found = {name: logger for name, logger in logging.Logger.manager.loggerDict.items()
             if isinstance(logger, logging.Logger)}
    found[""] = logging.getLogger()
    return found


def capture_logging() -> LoggingState:
    """The logging configuration as it is now."""
    return LoggingState(
        {name: LoggerState(list(logger.handlers), list(logger.filters), logger.level,
                           logger.propagate, logger.disabled)
         for name, logger in _loggers().items()},
        logging.root.manager.disable)


def restore_logging(state: LoggingState) -> None:
    """Put the configuration back as `state` has it; a logger made since is as getLogger makes
    one (no handler, NOTSET, propagating). Nothing is closed: see `close_dropped`."""
    for name, logger in _loggers().items():
        kept = state.loggers.get(name)
        if kept is None:
            kept = LoggerState([], [], logging.NOTSET, True, False)
        logger.handlers[:] = kept.handlers
        logger.filters[:] = kept.filters
        logger.level, logger.propagate, logger.disabled = kept.level, kept.propagate, \
            kept.disabled
    logging.root.manager.disable = state.disable
    logging.root.manager._clear_cache()  # type: ignore[attr-defined]


def handlers_of(state: LoggingState) -> list[logging.Handler]:
    """Every handler the configuration holds, once each."""
    seen: dict[int, logging.Handler] = {}
    for logger in state.loggers.values():
        for handler in logger.handlers:
            seen.setdefault(id(handler), handler)
    return list(seen.values())


def close_dropped(handlers: Iterable[logging.Handler], *kept: LoggingState) -> None:
    """Close the handlers that no state of `kept` holds (their files, in this process only)."""
    still = {id(handler) for state in kept for handler in handlers_of(state)}
    for handler in handlers:
        if id(handler) not in still:
            with contextlib.suppress(Exception):
                handler.close()


def end_previous_threads(listeners: Iterable[QueueListener],
                         executors: Iterable[ThreadPoolExecutor | None]) -> None:
    """After a re-import: end the previous import's log listeners that no logger feeds any more,
    and its thread pools that only a forgotten module held (a library's pool, which the new code
    may still use, is left running); each bounded by THREAD_END_S. A fresh process has none."""
    fed = {id(handler.queue) for handler in handlers_of(capture_logging())
           if hasattr(handler, "queue")}
    end_threads([listener for listener in listeners if id(listener.queue) not in fed],
                [executor for executor in executors
                 if executor is not None and _only_in_forgotten_modules(executor)])


def _only_in_forgotten_modules(obj: object) -> bool:
    """`obj` is a global of a module that is no longer imported, and of no other module."""
    owners = [ref for ref in gc.get_referrers(obj)
              if isinstance(ref, dict) and "__spec__" in ref and "__name__" in ref]
    if not owners:
        return False
    for namespace in owners:
        module = sys.modules.get(str(namespace["__name__"]))
        if module is not None and vars(module) is namespace:
            return False
    return True


def end_threads(listeners: Iterable[QueueListener],
                executors: Iterable[ThreadPoolExecutor | None]) -> None:
    """End log listeners (their queued records written first; their handlers closed) and thread
    pools (queued work cancelled), each bounded by THREAD_END_S."""
    for listener in listeners:
        thread: threading.Thread | None = getattr(listener, "_thread", None)
        if thread is None:
            continue
        with contextlib.suppress(Exception):
            listener.enqueue_sentinel()
        thread.join(THREAD_END_S)
        if not thread.is_alive():
            listener._thread = None
            for handler in listener.handlers:
                with contextlib.suppress(Exception):
                    handler.close()
    for executor in executors:
        if executor is None:
            continue
        executor.shutdown(wait=False, cancel_futures=True)
        for worker_thread in list(getattr(executor, "_threads", ())):
            worker_thread.join(THREAD_END_S)
