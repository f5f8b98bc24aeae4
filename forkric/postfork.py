"""What each worker does right after the fork, before its first poll, so that the handler sees a
process that imported it itself: its own thread pools, log listener threads, random sequences,
temp files and OpenMP threads; in the import-per-worker mode, its own import; then the user's
`@post_fork` hooks.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

from forkric import handler as handlers
from forkric import hooks, prefork, snapstart
from forkric.handler import Handler

log = logging.getLogger("forkric")
LISTENER_DRAIN_S = 2.0  # the most a worker's exit waits for each log listener to write its queue


def start_worker(inherited: prefork.Inheritance, handler: Handler) -> Handler:
    """Run in the child after the fork; returns the handler the worker serves (its own import of
    it in the per-worker mode). Raises what a failed import or hook raises: the worker then dies
    before polling and the supervisor starts another under its backoff."""
    privatise_anonymous_files()
    reseed(inherited)
    give_back_openmp(inherited)
    if inherited.mode == prefork.PER_WORKER:
        handler = import_again(inherited)
    else:
        repair_executors(inherited)
        restart_listeners(inherited)
    for hook in hooks.registered():
        hook()
    return handler


def privatise_anonymous_files() -> None:
    """An unnamed temp file made at import is one file, and one file offset, for all workers:
    each worker puts a private copy of it (content and offset) on the same fd."""
    for fd in prefork.anonymous_files():
        with contextlib.suppress(OSError):
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            folder = os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) or "/tmp"
            copy = os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
            try:
                size = os.fstat(fd).st_size
                copied = 0
                while copied < size:
                    sent = os.copy_file_range(fd, copy, size - copied, copied, copied)
                    if sent == 0:
                        break
                    copied += sent
                os.dup2(copy, fd)
                os.lseek(fd, offset, os.SEEK_SET)
            finally:
                os.close(copy)


def reseed(inherited: prefork.Inheritance) -> None:
    """Generators the import seeded from the OS get a fresh seed, as in a process of their own
    (CPython reseeds the `random` module's own generator at fork; not the others)."""
    for rng in list(prefork._entropy_seeded):
        rng.seed()
    for generator in inherited.generators:
        with contextlib.suppress(Exception):
            if hasattr(generator, "bit_generator"):  # numpy.random.Generator
                bits = generator.bit_generator
                bits.state = type(bits)().state
            else:  # numpy.random.RandomState, the legacy global one included
                generator.seed()


def give_back_openmp(inherited: prefork.Inheritance) -> None:
    """OpenMP was held to one thread while the supervisor imported; a worker gets the runtime's
    default back (the CPUs it may run on), as a process that imported alone would have."""
    if not inherited.give_back_openmp or not inherited.openmp:
        return
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    for path in inherited.openmp:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(path).omp_set_num_threads(threads)
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(threads)


def repair_executors(inherited: prefork.Inheritance) -> None:
    """A ThreadPoolExecutor used at import counts threads that do not exist in the child as its
    workers and hands them the work: forget them, so that it starts its own."""
    for ref in inherited.executors:
        executor: Any = ref()
        if executor is None:
            continue
        executor._threads.clear()
        executor._idle_semaphore = threading.Semaphore(0)
        executor._shutdown_lock = threading.Lock()


def restart_listeners(inherited: prefork.Inheritance) -> None:
    """A logging QueueListener's thread is gone in the child: start the worker's own, on a queue
    of its own (see `own_queue`), drained as the worker exits (`drain_listeners`)."""
    for listener in inherited.listeners:
        own_queue(listener.queue)
        listener._thread = None
        listener.start()
    if inherited.listeners:
        atexit.register(drain_listeners, list(inherited.listeners))


@contextlib.contextmanager
def listeners_paused(inherited: prefork.Inheritance) -> Iterator[None]:
    """Around a fork in the supervisor: the import's log listeners drained and their threads
    ended, started again after. A listener thread writing a record as the supervisor forks
    (the supervisor's own lines go through the handler's root QueueHandler: 'SIGHUP: handler
    imported again' comes just before the new workers' forks) holds its handler's stream lock,
    which no thread of the child will release: the worker's listener hung on its first write
    and the worker on its exit's flush (records lost, workers never replaced; 1 run in 4 on
    Python 3.13). Each is waited for LISTENER_DRAIN_S at most; one still running is left."""
    paused = []
    parent = os.getpid()
    for listener in inherited.listeners:
        thread = listener._thread
        if thread is None:
            continue
        with contextlib.suppress(Exception):
            listener.enqueue_sentinel()
            thread.join(LISTENER_DRAIN_S)
            if not thread.is_alive():
                listener._thread = None
                paused.append(listener)
    try:
        yield
    finally:
        # Only in the supervisor: a worker starts its own (restart_listeners, on its own queue).
        for listener in paused if os.getpid() == parent else ():
            with contextlib.suppress(Exception):
                listener.start()


def drain_listeners(listeners: list[Any]) -> None:
    """At a worker's exit (an atexit hook): what the restarted listeners still hold is written
    before the process ends. Workers end far more often than an imported-once process does
    (each reload, recycle, retire), and a listener's thread is a daemon: its queued records
    were lost with the worker (a CI run lost records logged just before a SIGHUP's swap).
    Each listener is given LISTENER_DRAIN_S at most (its handler may block)."""
    for listener in listeners:
        thread = listener._thread
        if thread is None:  # the handler's code stopped it itself
            continue
        with contextlib.suppress(Exception):
            listener.enqueue_sentinel()
            thread.join(LISTENER_DRAIN_S)
            listener._thread = None


def own_queue(shared: Any) -> None:
    """A queue.Queue copied at the fork: its lock may have been held by the supervisor's listener
    thread (taking a record the supervisor logged), which does not exist here, so the next put
    would hang; and the records it held are the supervisor's, not this process's. New locks,
    emptied (the handler's QueueHandler keeps the same queue object)."""
    if not isinstance(shared, queue.Queue):
        return  # a SimpleQueue has no Python lock; another kind is the user's own
    shared.mutex = threading.Lock()
    shared.not_empty = threading.Condition(shared.mutex)
    shared.not_full = threading.Condition(shared.mutex)
    shared.all_tasks_done = threading.Condition(shared.mutex)
    with contextlib.suppress(AttributeError):
        shared.queue.clear()
    shared.unfinished_tasks = 0


def import_again(inherited: prefork.Inheritance) -> Handler:
    """The per-worker mode (uWSGI's lazy-apps): forget the handler's own modules (those under
    the task root) and import them again here; libraries the supervisor imported stay shared."""
    handlers.forget_modules(inherited.task_root)
    hooks.forget()
    snapstart.forget_hooks()
    with prefork.importing(cap_openmp=False):
        function = handlers.load(inherited.handler_name)
    snapstart.run_own_hooks(os.environ)
    hooks.load_setting(inherited.post_fork_setting)
    return function
