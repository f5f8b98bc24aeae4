"""The worker: a forked child that long-polls `/next`, runs the handler, posts the result, checks
its own memory, and leaves (for a fresh fork) when it has grown too much or served enough.

`run_child` is a worker's whole life, from the fork to the exit status; `after_fork` is the one
place where a fresh worker is made to look like a process that imported the handler itself.
What the supervisor and a worker tell each other is in `forkric.protocol`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from forkric import invocation, memory, postfork, prefork, streaming
from forkric.connection import Interrupt, Interrupted
from forkric.handler import Handler
from forkric.logs import Logs
from forkric.protocol import LMI_SOCKET_ENV, RETIRE_SIGNAL, STOP_SIGNAL, Exit
from forkric.runtime_api import INVOCATION_ID_HEADER, Invocation, RuntimeAPI, RuntimeAPIExit
from forkric.scoreboard import Scoreboard, WorkerSlot

__all__ = ["LMI_SOCKET_ENV", "ChildStart", "Limits", "Worker", "after_fork", "run_child"]

_PR_SET_PDEATHSIG = 1

log = logging.getLogger("forkric")

# A signal disposition as `signal.getsignal` gives it.
Disposition = Callable[[int, FrameType | None], Any] | int | None


@dataclass(frozen=True)
class Limits:
    """One worker's limits; 0 turns a limit off."""

    max_uss_kb: int = 0  # private memory (USS), kB
    max_requests: int = 0  # invocations, already jittered for this worker
    trace_leaks: bool = False  # tracemalloc on, the sites that grew logged at a memory recycle
    timeout_ms: int = 0  # the function timeout when known: a later deadline is not believed


@dataclass
class ChildStart:
    """Everything a freshly forked worker is handed by its supervisor."""

    index: int  # its scoreboard slot
    supervisor_pid: int
    handler: Handler
    runtime_api: str  # host:port
    logs: Logs
    board: Scoreboard
    limits: Limits
    environ: Mapping[str, str]
    # The signal dispositions the process had before the supervisor took those signals (the
    # handler's own, installed at import): every worker gets them back.
    dispositions: dict[int, Disposition] = field(default_factory=dict)
    close_fds: tuple[int, ...] = ()  # the supervisor's own descriptors
    signal_mask: frozenset[int] = frozenset()  # the mask to restore once the controls are in
    inherited: prefork.Inheritance = field(default_factory=prefork.Inheritance)


def run_child(start: ChildStart) -> int:
    """A worker's life after `os.fork()`: returns the status for `os._exit`.

    The exit is Python's, made explicit since a forked child leaves through `os._exit`: a
    `SystemExit` from the handler gives its status (None 0, a message printed to stderr and 1),
    `atexit` hooks run, streams are flushed; an uncaught KeyboardInterrupt ends the process by
    SIGINT after its traceback. A graceful end (stopped, retired, recycled) first runs the
    handler's own SIGTERM handler, as the process stops, after the slot announced the exit;
    a `sys.exit` there ends the process with the announced status.
    """
    code = 1
    try:
        slot = WorkerSlot(start.board, start.index)
        slot.claim(os.getpid())
        die_with_parent(start.supervisor_pid)
        controls = Controls.install(start.dispositions)
        signal.pthread_sigmask(signal.SIG_SETMASK, start.signal_mask)
        for fd in start.close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        socket_path = start.environ.get(LMI_SOCKET_ENV)
        if socket_path:
            redirect_output(socket_path)
        handler = after_fork(start)
        worker = Worker(start.index, handler, start.runtime_api, start.logs, slot, start.limits,
                        controls)
        code = worker.run()
        # The handler's own way out of a stop (sys.exit): the exit announced in the slot stands.
        with contextlib.suppress(SystemExit):
            controls.run_user_sigterm()
    except SystemExit as exc:
        code = _system_exit(exc)
    except KeyboardInterrupt:
        # As Python itself: the traceback, the atexit hooks, then death by SIGINT.
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    _finish()
    return code


def after_fork(start: ChildStart) -> Handler:
    """THE seam of a fresh worker: runs once in each worker right after forkric's own set-up
    (slot claimed, parent-death signal, control signals, output), before its first poll; returns
    the handler the worker serves. Per-worker repairs of what the import left, the user's
    post-fork hook and importing per worker belong here. Its time counts against the worker
    start timeout; what it raises ends the worker as a failed start (logged, replaced under the
    backoff)."""
    return postfork.start_worker(start.inherited, start.handler)


def _system_exit(exc: SystemExit) -> int:
    """Python's handling of an uncaught SystemExit: its status, its message to stderr."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _finish() -> None:
    """What Python does before a process ends: the atexit hooks, then the streams flushed."""
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class Controls:
    """The supervisor's control signals as seen by a worker: flags set by handlers that never
    raise, and a wakeup pipe that ends the wait for `/next` (see connection.Interrupt)."""

    def __init__(self, user_sigterm: Disposition) -> None:
        self.stopping = False
        self.retiring = False
        self.user_sigterm = user_sigterm
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.interrupt = Interrupt(self.wake_read, lambda: self.stopping)

    @classmethod
    def install(cls, dispositions: Mapping[int, Disposition]) -> Controls:
        """Give the handler its own signal dispositions back, then take only forkric's control
        signals, and SIGTERM / SIGINT where the handler left them at their defaults (a stop from
        outside, the RIE's or an operator's, is then a graceful one)."""
        for sig, disposition in dispositions.items():
            # None: a handler set outside Python, which cannot be put back; the default then.
            signal.signal(sig, signal.SIG_DFL if disposition is None else disposition)
        user_sigterm = signal.getsignal(signal.SIGTERM)
        controls = cls(user_sigterm if callable(user_sigterm) else None)
        signal.signal(STOP_SIGNAL, controls._on_stop)
        signal.signal(RETIRE_SIGNAL, controls._on_retire)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, controls._on_stop)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, controls._on_stop)
        controls.arm()
        return controls

    def arm(self) -> None:
        """Make every signal write to the wakeup pipe, from C, the moment it arrives: a signal
        between the check of `stopping` and the wait for /next then still ends the wait."""
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._wake()

    def _on_retire(self, signum: int, frame: FrameType | None) -> None:
        self.retiring = True

    def _wake(self) -> None:
        # Also from Python: should the handler's code take the wakeup fd (asyncio's signal
        # handling does, and gives back -1), a stop during the wait still ends it; only the
        # instant between the check and the wait is then uncovered. Not re-armed per
        # invocation: that cost 3 us of each.
        with contextlib.suppress(OSError):
            os.write(self.wake_write, b"\0")

    def run_user_sigterm(self) -> None:
        """The handler's own SIGTERM handler, as its process stops; what it raises (sys.exit)
        propagates."""
        if self.user_sigterm is not None:
            signal.raise_signal(signal.SIGTERM)


class Worker:
    """The invocation loop of one worker process (see `run`)."""

    def __init__(self, index: int, handler: Handler, runtime_api: str, logs: Logs,
                 slot: WorkerSlot, limits: Limits, controls: Controls) -> None:
        self.index = index
        self.handler = handler
        self.api = RuntimeAPI(runtime_api)
        self.logs = logs
        self.slot = slot
        self.limits = limits
        self.controls = controls
        self.forked_away = False  # set in a process the handler forks from this one
        self.baseline: tracemalloc.Snapshot | None = None
        self.memory = memory.Watch(limits.max_uss_kb)
        # (invocations, USS kB) after this worker's first invocation, when a memory limit is set:
        # with its USS at the recycle, the growth per invocation over the whole lifetime.
        self.first: tuple[int, int] | None = None

    def run(self) -> Exit:
        """Serve until told to stop or retire, until a limit says recycle, or until the Runtime
        API is gone; announces the exit in the slot and returns it. Exceptions other than the
        Runtime API's exit (a SystemExit from the handler, say) propagate with the slot as it
        was: busy, if an invocation was running."""
        os.register_at_fork(after_in_child=self._forked_by_handler)
        if self.limits.trace_leaks:
            tracemalloc.start(10)
            self.baseline = tracemalloc.take_snapshot()
        controls = self.controls
        try:
            while not (controls.stopping or controls.retiring):
                self.slot.idle()
                try:
                    job = self.api.next(controls.interrupt, self)
                except Interrupted:
                    break
                self._serve(job)
                if self._recycle_reason():
                    return self._leave(Exit.RECYCLE)
        except RuntimeAPIExit as exc:
            log.error("forkric: worker %d stops: %s", self.index, exc)
            return self._leave(Exit.API_GONE)
        return self._leave(Exit.STOPPED)

    def _leave(self, code: Exit) -> Exit:
        self.slot.exiting(code)
        return code

    def hold(self, request_id: str, deadline_ms: int) -> None:
        """runtime_api.Holder: busy from the head of /next's answer, before its body is read, so
        that a worker killed in between is reported as holding it (the supervisor answers its
        invocation at once, instead of leaving it to time out)."""
        if self.limits.timeout_ms:
            # The RIE's managed-instances mode sends deadlines far in the future; the function
            # timeout, when the environment names it, bounds what the stuck-worker check waits.
            deadline_ms = min(deadline_ms, int(time.time() * 1000) + self.limits.timeout_ms)
        self.slot.busy(request_id, deadline_ms)

    def release(self) -> None:
        """runtime_api.Holder: the answer whose head arrived failed; polling again."""
        self.slot.idle()

    def _serve(self, job: Invocation) -> None:
        outcome = invocation.run(job, self.handler, self.logs)
        if self.forked_away:
            _forked_child_returned()
        invocation_id = job.header(INVOCATION_ID_HEADER)
        if outcome.stream is not None:
            streaming.send(self.api, job.request_id, outcome.stream, invocation_id, self.logs)
        elif outcome.error is None:
            status = self.api.post_response(job.request_id, outcome.body, outcome.content_type,
                                            invocation_id)
            if status == 413:
                log.error("forkric: the response to %s is over the payload limit (%d bytes)",
                          job.request_id, len(outcome.body))
        else:
            self.api.post_error(job.request_id, outcome.error, outcome.xray_cause, invocation_id)
        self.slot.done()

    def _forked_by_handler(self) -> None:
        """In a process the handler forked: it shares neither the worker's Runtime API
        connection nor its slot (closing our copy of the socket leaves the worker's open)."""
        self.forked_away = True
        self.slot.detach()
        sock, self.api.conn.sock = self.api.conn.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _recycle_reason(self) -> str:
        served = self.slot.served
        if self.limits.max_requests and served >= self.limits.max_requests:
            return self._say(f"served {served} invocations (--max-requests)")
        if not self.limits.max_uss_kb:
            return ""
        first = self.first
        if first is None:
            first = self.first = (served, memory.uss_kb())  # one page-table walk per lifetime
        rss, uss = self.memory.check(served)
        self.slot.memory(rss, self.memory.last_uss if uss is None else uss)
        if uss is None or uss <= self.limits.max_uss_kb:
            return ""
        self._log_leak_sites()
        first_served, first_uss = first
        return self._say(f"private memory {uss / 1024:.1f} MB over the "
                         f"{self.limits.max_uss_kb / 1024:g} MB limit after {served} invocations "
                         f"({first_uss / 1024:.1f} MB after {first_served})")

    def _say(self, reason: str) -> str:
        log.warning("forkric: recycling worker %d (pid %d): %s", self.index, os.getpid(), reason)
        return reason

    def _log_leak_sites(self) -> None:
        if self.baseline is None:
            return
        grown = tracemalloc.take_snapshot().compare_to(self.baseline, "lineno")
        for stat in grown[:10]:
            log.warning("forkric: leak site: %s", stat)


def _forked_child_returned() -> None:
    """A process the handler forked returned from the handler into the worker's loop: the
    worker answers the invocation, so this process leaves, quietly but said."""
    log.warning("forkric: process %d, forked by the handler, returned from it; it exits (the "
                "worker answers the invocation)", os.getpid())
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def die_with_parent(parent_pid: int) -> None:
    """Make sure a worker never outlives its supervisor: no orphans polling the Runtime API."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the supervisor died before the line above took effect
        os._exit(Exit.STOPPED)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(Exit.STOPPED)


def redirect_output(socket_path: str) -> None:
    """Lambda Managed Instances: each worker's stdout and stderr are its own connections."""
    for fd in (1, 2):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(socket_path)
            os.dup2(conn.fileno(), fd)
