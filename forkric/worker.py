"""The worker: a forked child that long-polls `/next`, runs the handler, posts the result, checks
its own memory, and leaves (for a fresh fork) when it has grown too much or served enough."""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass

from forkric import invocation, memory
from forkric.handler import Handler
from forkric.logs import Logs
from forkric.runtime_api import INVOCATION_ID_HEADER, Invocation, RuntimeAPI, RuntimeAPIExit
from forkric.scoreboard import WorkerSlot

# Exit statuses the supervisor reads. Anything else is a crash.
EXIT_STOPPED = 0
EXIT_RECYCLE = 90
EXIT_API_GONE = 91

STACK_SIGNAL = signal.SIGUSR1  # the supervisor asks a stuck worker for its Python stack
# "Leave after your next invocation." A worker waiting on /next cannot just leave: the Runtime
# API may already have handed that request an invocation, which would then be lost.
RETIRE_SIGNAL = signal.SIGUSR2
LMI_SOCKET_ENV = "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("forkric")


@dataclass(frozen=True)
class Limits:
    max_uss_kb: int = 0  # 0: no memory limit
    max_requests: int = 0  # 0: no request limit, already jittered for this worker
    trace_leaks: bool = False
    timeout_ms: int = 0  # the function timeout when known: a later deadline is not believed


class _Stop(BaseException):
    """Raised by the stop signal while the worker waits on /next: nothing is lost by leaving."""


class Worker:
    def __init__(self, index: int, handler: Handler, runtime_api: str, logs: Logs,
                 slot: WorkerSlot, limits: Limits) -> None:
        self.index = index
        self.handler = handler
        self.api = RuntimeAPI(runtime_api)
        self.logs = logs
        self.slot = slot
        self.limits = limits
        self.polling = False
        self.stopping = False
        self.retiring = False
        self.baseline: tracemalloc.Snapshot | None = None
        self.memory = memory.Watch(limits.max_uss_kb)
        # (invocations, USS kB) after this worker's first invocation, when a memory limit is set:
        # with its USS at the recycle, the growth per invocation over the whole lifetime.
        self.first: tuple[int, int] | None = None

    def run(self) -> int:
        """Serve until told to stop or to recycle; returns the exit status."""
        self._install_signals()
        if self.limits.trace_leaks:
            tracemalloc.start(10)
            self.baseline = tracemalloc.take_snapshot()
        try:
            while not (self.stopping or self.retiring):
                self.slot.idle()
                self.polling = True
                try:
                    job = self.api.next()
                except _Stop:
                    break
                finally:
                    self.polling = False
                self._serve(job)
                if self._recycle_reason():
                    self.slot.exiting()
                    return EXIT_RECYCLE
        except RuntimeAPIExit as exc:
            log.error("forkric: worker %d stops: %s", self.index, exc)
            return EXIT_API_GONE
        self.slot.exiting()
        return EXIT_STOPPED

    def _serve(self, job: Invocation) -> None:
        deadline_ms = job.deadline_ms
        if self.limits.timeout_ms:
            # The RIE's managed-instances mode sends deadlines far in the future; the function
            # timeout, when the environment names it, bounds what the stuck-worker check waits.
            deadline_ms = min(deadline_ms, int(time.time() * 1000) + self.limits.timeout_ms)
        self.slot.busy(job.request_id, deadline_ms)
        outcome = invocation.run(job, self.handler, self.logs)
        invocation_id = job.header(INVOCATION_ID_HEADER)
        if outcome.error is None:
            status = self.api.post_response(job.request_id, outcome.body, outcome.content_type,
                                            invocation_id)
            if status == 413:
                log.error("forkric: the response to %s is over the payload limit (%d bytes)",
                          job.request_id, len(outcome.body))
        else:
            self.api.post_error(job.request_id, outcome.error, outcome.xray_cause, invocation_id)
        self.slot.done()

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

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(RETIRE_SIGNAL, self._on_retire)
        faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)

    def _on_retire(self, signum: int, frame: object) -> None:
        self.retiring = True

    def _on_stop(self, signum: int, frame: object) -> None:
        # Waiting on /next: leave now, nothing is held. Otherwise finish the invocation first.
        self.stopping = True
        if self.polling:
            raise _Stop


def die_with_parent(parent_pid: int) -> None:
    """Make sure a worker never outlives its supervisor: no orphans polling the Runtime API."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the supervisor died before the line above took effect
        os._exit(EXIT_STOPPED)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(EXIT_STOPPED)


def redirect_output(socket_path: str) -> None:
    """Lambda Managed Instances: each worker's stdout and stderr are its own connections."""
    for fd in (1, 2):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(socket_path)
            os.dup2(conn.fileno(), fd)
