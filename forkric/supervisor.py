"""The supervisor: forks the workers, reaps them, replaces the dead, recycles, kills the stuck.

It never serves an invocation and starts no thread. Signal handlers only queue the signal; the
main loop, woken through the wakeup fd, does the work, one short method per concern.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import select
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from forkric import errors, postfork, prefork, worker
from forkric.config import LOCAL_ENV, Config
from forkric.handler import Handler
from forkric.logs import Logs
from forkric.runtime_api import RuntimeAPI
from forkric.scoreboard import Scoreboard, WorkerSlot

log = logging.getLogger("forkric")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD,
                   signal.SIGTTIN, signal.SIGTTOU)
# How the Go runtime behind Lambda words a signal in "Runtime exited with error: signal: ...".
SIGNAL_WORDS: dict[int, str] = {
    signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated", signal.SIGBUS: "bus error", signal.SIGINT: "interrupt",
    signal.SIGFPE: "floating point exception", signal.SIGILL: "illegal instruction",
    signal.SIGHUP: "hangup", signal.SIGQUIT: "quit", signal.SIGPIPE: "broken pipe",
    signal.SIGUSR1: "user defined signal 1", signal.SIGUSR2: "user defined signal 2",
    signal.SIGALRM: "alarm clock", signal.SIGTRAP: "trace/breakpoint trap",
    signal.SIGXCPU: "CPU time limit exceeded", signal.SIGSYS: "bad system call",
}
MAX_BACKOFF_S = 30.0
TICK_S = 1.0
STACK_DUMP_WAIT_S = 0.2


@dataclass
class Death:
    """A reaped worker: how it ended and what it held."""

    pid: int
    index: int
    status: int
    peak_rss_kb: int
    state: str
    request_id: str
    invocations: int

    @property
    def code(self) -> int | None:
        return os.waitstatus_to_exitcode(self.status) if os.WIFEXITED(self.status) else None

    def wording(self) -> str:
        """'signal: killed', 'exit status 3', as Lambda words the end of a runtime process."""
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            words = SIGNAL_WORDS.get(sig) or f"signal {sig}"
            core = " (core dumped)" if os.WCOREDUMP(self.status) else ""
            return f"signal: {words}{core}"
        return f"exit status {self.code}"


def exit_error(death: Death, out_of_memory: bool) -> dict[str, str]:
    """The error Lambda gives the invoker of an invocation whose runtime process died."""
    error_type = errors.OUT_OF_MEMORY if out_of_memory else errors.EXIT_ERROR
    how = "without providing a reason" if death.code == 0 else f"with error: {death.wording()}"
    return {"errorType": error_type,
            "errorMessage": f"RequestId: {death.request_id} Error: Runtime exited {how}"}


class Supervisor:
    def __init__(self, config: Config, handler: Handler, logs: Logs,
                 reload: Callable[[], Handler] | None = None,
                 inherited: prefork.Inheritance | None = None) -> None:
        self.config = config
        self.handler = handler
        self.inherited = inherited or prefork.Inheritance()
        self.logs = logs
        self.reload = reload
        self.board = Scoreboard.create(config.status_file)
        self.target = min(config.workers, self.board.capacity)
        if self.target < config.workers:
            log.warning("forkric: %d workers asked for; the scoreboard holds %d", config.workers,
                        self.target)
        self.workers: dict[int, int] = {}  # pid -> slot index
        self.retiring: set[int] = set()  # asked to stop: their exit is expected
        self.stuck: set[int] = set()  # killed for being past their deadline
        self.to_replace: list[int] = []  # SIGHUP: old workers, replaced one at a time
        self.replacing: tuple[int, int] | None = None  # (old pid, its replacement)
        self.signals: deque[int] = deque()
        self.failures = 0  # workers in a row that died without holding an invocation
        self.spawn_after = 0.0
        self.stopping = False
        self.exit_code = 0
        self.stop_deadline = 0.0
        self.oom_kills = _oom_kill_count()
        self.pid = os.getpid()
        self.board.count("workers", self.target)

    # The main loop.

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.wake_fds = (wake_read, wake_write)
        signal.set_wakeup_fd(wake_write)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._queue_signal)
        gc.collect()
        gc.freeze()  # the imported handler's objects stay out of the children's collections
        log.info("forkric: supervisor %d starting %d worker(s) for %s", self.pid, self.target,
                 self.config.handler)
        while True:
            self.handle_signals()
            self.reap_workers()
            if self.stopping:
                if not self.workers:
                    break
                self.hurry_stop()
            else:
                self.manage_workers()
                self.kill_stuck_workers()
            self._sleep()
        log.info("forkric: supervisor %d stopped", self.pid)
        return self.exit_code

    def _queue_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _sleep(self) -> None:
        timeout = TICK_S
        if self.spawn_after > time.monotonic():
            timeout = min(timeout, self.spawn_after - time.monotonic())
        if self.stopping:
            timeout = min(timeout, max(self.stop_deadline - time.monotonic(), 0.0))
        try:
            select.select([self.wake_fds[0]], [], [], max(timeout, 0.0))
            os.read(self.wake_fds[0], 4096)
        except (BlockingIOError, InterruptedError):
            pass

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            name = signal.Signals(signum).name.lower()
            getattr(self, f"handle_{name}")()

    # Signals.

    def handle_sigchld(self) -> None:
        pass  # reap_workers runs on every turn of the loop

    def handle_sigterm(self) -> None:
        if self.stopping:
            return
        log.info("forkric: stopping: idle workers now, busy ones within %.0f s",
                 self.config.shutdown_grace_s)
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.shutdown_grace_s
        for pid in self.workers:
            self._signal(pid, signal.SIGTERM)

    handle_sigint = handle_sigterm

    def handle_sigttin(self) -> None:
        if self.target >= self.board.capacity:
            log.warning("forkric: already at %d workers, the most the scoreboard holds",
                        self.target)
            return
        self._want(self.target + 1)
        log.info("forkric: SIGTTIN: %d worker(s) wanted", self.target)

    def handle_sigttou(self) -> None:
        if self.target <= 1:
            return
        self._want(self.target - 1)
        log.info("forkric: SIGTTOU: %d worker(s) wanted", self.target)

    def handle_sighup(self) -> None:
        if self.reload is None:
            return
        try:
            self.handler = self.reload()
            self.inherited = prefork.prepare(self.config.handler, self.config.import_mode,
                                             self.config.post_fork, self.inherited.task_root)
        except Exception as exc:
            error, _ = errors.from_exception(exc)
            trace = "".join(error["stackTrace"])
            log.error("forkric: SIGHUP: the handler failed to import again, the old one serves: "
                      "%s: %s%s", error["errorType"], error["errorMessage"],
                      f"\nTraceback (most recent call last):\n{trace}".rstrip() if trace else "")
            return
        # The old code's objects were frozen with the rest: thawed, collected, frozen again.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.to_replace = list(self.workers)
        log.info("forkric: SIGHUP: handler imported again; replacing %d worker(s) one at a time",
                 len(self.to_replace))

    # Workers.

    def _want(self, count: int) -> None:
        """A new worker count, also on the scoreboard for those who watch it."""
        self.board.count("workers", count - self.target)
        self.target = count

    def spawn_worker(self, index: int) -> int:
        limits = worker_limits(self.config)
        pid = os.fork()
        if pid:
            self.workers[pid] = index
            self.board.assign(index, pid)
            self.board.count("spawns")
            return pid
        os._exit(self._run_child(index, limits))

    def _run_child(self, index: int, limits: worker.Limits) -> int:
        code = 1
        try:
            worker.die_with_parent(self.pid)
            signal.set_wakeup_fd(-1)
            for fd in self.wake_fds:
                os.close(fd)
            socket_path = self.config.environ.get(worker.LMI_SOCKET_ENV)
            if socket_path:
                worker.redirect_output(socket_path)
            function = postfork.start_worker(self.inherited, self.handler)
            code = worker.Worker(index, function, self.config.runtime_api, self.logs,
                                 WorkerSlot(self.board, index), limits).run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            # As Python itself does: the traceback, then death by SIGINT ("signal: interrupt").
            traceback.print_exc()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        return code

    def reap_workers(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.workers.pop(pid, None)
            if index is None:
                continue
            slot = self.board.slot(index)
            self.board.clear(index)
            self._on_death(Death(pid, index, status, usage.ru_maxrss, slot.state,
                                 slot.request_id, slot.invocations))

    def _on_death(self, death: Death) -> None:
        expected = death.pid in self.retiring
        self.retiring.discard(death.pid)
        if death.code == worker.EXIT_RECYCLE:
            self.board.count("recycles")
        elif death.code == worker.EXIT_API_GONE:
            log.error("forkric: the Runtime API is gone; the runtime exits")
            self.exit_code = 1
            self.handle_sigterm()
        elif death.pid in self.stuck:
            self.stuck.discard(death.pid)
            self.board.count("kills")
        elif death.state == "busy":
            self._report_crash(death)
        elif not (expected or self.stopping) or death.code != worker.EXIT_STOPPED:
            self._note_failed_start(death)

    def _report_crash(self, death: Death) -> None:
        self.board.count("crashes")
        self.failures = 0
        out_of_memory = self._was_oom(death)
        error = exit_error(death, out_of_memory)
        log.error("forkric: worker %d (pid %d) died (%s) during %s; peak RSS %.0f MB; "
                  "reporting %s and starting another", death.index, death.pid, death.wording(),
                  death.request_id, death.peak_rss_kb / 1024, error["errorType"])
        try:
            api = RuntimeAPI(self.config.runtime_api, next_retries=0)
            api.post_error(death.request_id, error)
            api.close()
        except Exception as exc:
            log.error("forkric: could not report the error of %s: %s", death.request_id, exc)

    def _note_failed_start(self, death: Death) -> None:
        self.board.count("crashes")
        self.failures += 1
        delay = min(0.1 * 2 ** (self.failures - 1), MAX_BACKOFF_S)
        self.spawn_after = time.monotonic() + delay
        log.error("forkric: worker %d (pid %d) died (%s) holding no invocation; %d such death(s) "
                  "in a row: next start in %.1f s", death.index, death.pid, death.wording(),
                  self.failures, delay)

    def _was_oom(self, death: Death) -> bool:
        if not os.WIFSIGNALED(death.status) or os.WTERMSIG(death.status) != signal.SIGKILL:
            return False
        kills, self.oom_kills = self.oom_kills, _oom_kill_count()
        if self.oom_kills > kills:
            return True
        limit_mb = self.config.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        return limit_mb.isdigit() and death.peak_rss_kb >= int(limit_mb) * 1024

    def manage_workers(self) -> None:
        self._advance_replacement()
        active = [pid for pid in self.workers if pid not in self.retiring]
        wanted = self.target + (1 if self.replacing else 0)
        while len(active) < wanted and time.monotonic() >= self.spawn_after:
            active.append(self.spawn_worker(self._free_index()))
        for pid in active[wanted:]:
            self._retire(pid)

    def _advance_replacement(self) -> None:
        if self.replacing:
            old, new = self.replacing
            if new not in self.workers:  # the replacement died: try another
                self.replacing = None
                self.to_replace.insert(0, old)
            elif self.board.slot(self.workers[new]).state in ("idle", "busy"):
                # Under forkric local an idle old worker leaves its long poll at once (the
                # service gives back what it was handed), so the next call runs the new code.
                self._retire(old, now=bool(self.config.environ.get(LOCAL_ENV)))
                self.replacing = None
        while self.to_replace and self.replacing is None:
            old = self.to_replace.pop(0)
            if old in self.workers and old not in self.retiring:
                self.replacing = (old, self.spawn_worker(self._free_index()))

    def _free_index(self) -> int:
        used = set(self.workers.values())
        return next(i for i in range(self.board.capacity) if i not in used)

    def _retire(self, pid: int, now: bool = False) -> None:
        """Ask a worker to leave once it has served the invocation it waits for or holds (`now`:
        the one it holds, if any; an idle one leaves its long poll)."""
        if pid in self.workers:
            self.retiring.add(pid)
            self._signal(pid, signal.SIGTERM if now else worker.RETIRE_SIGNAL)

    def kill_stuck_workers(self) -> None:
        now_ms = time.time() * 1000
        grace_ms = self.config.stuck_grace_s * 1000
        for pid, index in list(self.workers.items()):
            slot = self.board.slot(index)
            if slot.state != "busy" or pid in self.stuck or not slot.deadline_ms:
                continue
            late_ms = now_ms - slot.deadline_ms
            if late_ms <= grace_ms:
                continue
            log.error("forkric: worker %d (pid %d) is %.1f s past the deadline of %s; its stack "
                      "follows, then it is killed and replaced", index, pid, late_ms / 1000,
                      slot.request_id)
            self._signal(pid, worker.STACK_SIGNAL)
            time.sleep(STACK_DUMP_WAIT_S)  # faulthandler writes from the worker's signal handler
            self.stuck.add(pid)
            self._signal(pid, signal.SIGKILL)

    def hurry_stop(self) -> None:
        if time.monotonic() < self.stop_deadline:
            return
        for pid in self.workers:
            log.warning("forkric: worker pid %d still busy after the grace period: killed", pid)
            self._signal(pid, signal.SIGKILL)
        self.stop_deadline = time.monotonic() + TICK_S

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def worker_limits(config: Config, rng: random.Random | None = None) -> worker.Limits:
    """One worker's limits; the request limit jittered so that workers do not all leave at once."""
    jitter = (rng or random).randint(0, config.max_requests_jitter)
    return worker.Limits(
        max_uss_kb=int(config.max_worker_memory_mb * 1024),
        max_requests=config.max_requests + jitter if config.max_requests else 0,
        trace_leaks=config.trace_leaks,
        timeout_ms=int(config.timeout_s * 1000),
    )


def _oom_kill_count() -> int:
    """The kernel's count of OOM kills in this process's memory cgroup (v1 or v2), 0 if unknown."""
    try:
        with open("/proc/self/cgroup") as file:
            entries = [line.rstrip("\n").split(":", 2) for line in file]
    except OSError:
        return 0
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            found = _read_counter(f"/sys/fs/cgroup/memory{path}/memory.oom_control", "oom_kill")
            if found is not None:
                return found
    for _, controllers, path in entries:
        if controllers == "":
            return _read_counter(f"/sys/fs/cgroup{path}/memory.events", "oom_kill") or 0
    return 0


def _read_counter(path: str, key: str) -> int | None:
    try:
        with open(path) as file:
            for line in file:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return None
