"""The supervisor: forks the workers, reaps them, replaces the dead, recycles, kills the stuck.

It never serves an invocation and starts no thread. Signal handlers only queue the signal; the
main loop, woken through the wakeup fd, does the work, one short method per concern. What it
tells its workers and reads from them is `forkric.protocol`; the operating system calls its policy
makes (fork, kill, wait, the report of a dead worker's invocation) go through `System`, which unit
tests replace.

Signals: TERM and INT stop gracefully (idle workers at once, busy ones within --shutdown-grace,
a worker already past its deadline at once), QUIT stops at once, HUP imports the handler again and
replaces the workers one at a time, TTIN / TTOU add or remove a worker, USR1 writes every worker's
stack to the log; USR2, ALRM and the others whose default would end the process are logged and
ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
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

import psutil

from forkric import errors, postfork, prefork, reimport, worker
from forkric.config import LOCAL_ENV, Config
from forkric.handler import Handler
from forkric.logs import Logs
from forkric.protocol import (
    RELOAD_FAILED,
    RETIRE_SIGNAL,
    STACK_SIGNAL,
    STOP_SIGNAL,
    Fate,
    Kill,
    SlotState,
    classify,
    dead_worker_error,
    process_end,
)
from forkric.runtime_api import RuntimeAPI
from forkric.scoreboard import Scoreboard, Slot

log = logging.getLogger("forkric")

# Signals whose default action would end the supervisor and that mean nothing to it.
_IGNORED = tuple(getattr(signal, name) for name in (
    "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGXCPU", "SIGXFSZ")
    if hasattr(signal, name))
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, *_IGNORED)
# The workers' control signals mean nothing to the supervisor: blocked, so that a worker, which
# inherits the mask, receives them only once its handlers are in.
CONTROL_SIGNALS = frozenset({STOP_SIGNAL, RETIRE_SIGNAL})
MAX_BACKOFF_S = 30.0
TICK_S = 1.0
STACK_DUMP_WAIT_S = 0.2
REPORT_TIMEOUT_S = 2.0  # a Runtime API that never answers a report holds the loop this long
STEADY_S = 10.0  # a worker that lived this long started well, whatever ended it
_PR_SET_CHILD_SUBREAPER = 36


class System:
    """The operating system as the supervisor's policy uses it: replaced in unit tests."""

    def fork(self) -> int:
        """os.fork(): 0 in the child, the child's pid in the parent; OSError when it fails."""
        return os.fork()

    def kill(self, pid: int, sig: int) -> None:
        """Send a signal; a process already gone is not an error."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def reap(self) -> tuple[int, int, int] | None:
        """One ended child: (pid, wait status, peak RSS kB); None when none has ended."""
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        return (pid, status, usage.ru_maxrss) if pid else None

    def report(self, runtime_api: str, request_id: str, error: dict[str, str]) -> int:
        """Post a dead worker's invocation error; the HTTP status (202 taken). Bounded by
        REPORT_TIMEOUT_S, raises OSError."""
        api = RuntimeAPI(runtime_api, next_retries=0, timeout=REPORT_TIMEOUT_S)
        try:
            return api.post_error(request_id, error)
        finally:
            api.close()

    def monotonic(self) -> float:
        """Seconds on the monotonic clock: every supervisor timer (backoff, grace, starts)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block the supervisor (only for the stack dump before a kill)."""
        time.sleep(seconds)


@dataclass
class WorkerRecord:
    """What the supervisor knows of one live worker (the slot holds what the worker says)."""

    pid: int
    index: int  # its scoreboard slot
    started: float  # monotonic seconds
    ready: bool = False  # reached its first poll
    retiring: bool = False  # asked to leave: its exit is expected
    killed: Kill | None = None  # why the supervisor killed it, if it did


@dataclass
class Death:
    """A reaped worker: how it ended, what its slot held, what that means."""

    record: WorkerRecord
    status: int  # the wait status
    peak_rss_kb: int
    slot: Slot
    fate: Fate

    @property
    def wording(self) -> str:
        """'signal: killed', 'exit status 3', as Lambda words the end of a runtime process."""
        return process_end(self.status)


class Supervisor:
    """Forks `config.workers` workers (clamped to the scoreboard's capacity) serving `handler`,
    and keeps them serving until told to stop; `run` returns the runtime's exit status."""

    def __init__(self, config: Config, handler: Handler, logs: Logs,
                 reload: Callable[[], Handler] | None = None,
                 inherited: prefork.Inheritance | None = None, system: System | None = None,
                 board: Scoreboard | None = None) -> None:
        self.config = config
        self.handler = handler
        self.inherited = inherited or prefork.Inheritance()
        self.logs = logs
        self.reload = reload
        self.system = system or System()
        self.board = board or Scoreboard.create(config.status_file)
        self.target = min(config.workers, self.board.capacity)
        if self.target < config.workers:
            log.warning("forkric: %d workers asked for; the scoreboard holds %d", config.workers,
                        self.target)
        self.workers: dict[int, WorkerRecord] = {}
        self.to_replace: list[int] = []  # SIGHUP: old workers, replaced one at a time
        self.replacing: tuple[int, int] | None = None  # (old pid, its replacement)
        self.signals: deque[int] = deque()
        self.failures = 0  # workers in a row that ended badly without holding an invocation
        self.spawn_after = 0.0
        self.stopping = False
        self.exit_code = 0
        self.stop_deadline = 0.0
        self.faults = 0
        self.oom_kills = _oom_kill_count()
        self.pid = os.getpid()
        self.dispositions: dict[int, worker.Disposition] = {}
        self.wake_fds: tuple[int, ...] = ()
        self.signal_mask = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
        self.board.count("workers", self.target)

    # The main loop.

    def run(self) -> int:
        """Fork the workers and supervise them until stopped; the exit status: 0, or 1 when the
        Runtime API went away or the supervisor itself failed."""
        self._take_signals()
        _become_subreaper()
        gc.collect()
        gc.freeze()  # the imported handler's objects stay out of the children's collections
        log.info("forkric: supervisor %d starting %d worker(s) for %s", self.pid, self.target,
                 self.config.handler)
        while True:
            try:
                if self._turn():
                    break
            except Exception:
                if self._fault():
                    break
        self._end_stragglers()
        prefork.drop_import_exit_hooks()
        log.info("forkric: supervisor %d stopped", self.pid)
        return self.exit_code

    def _turn(self) -> bool:
        """One turn of the loop; True once stopped and every worker is gone."""
        self.handle_signals()
        self.reap_workers()
        if self.stopping:
            if not self.workers:
                return True
            self.hurry_stop()
        else:
            self.manage_workers()
            self.watch_workers()
        self._sleep()
        return False

    def _fault(self) -> bool:
        """Anything unexpected in the loop: logged with its traceback, then a graceful stop; a
        second fault while stopping kills the workers. True when the loop must end now."""
        log.error("forkric: the supervisor failed; stopping\n%s", traceback.format_exc())
        self.exit_code = 1
        self.faults += 1
        if self.faults == 1 or not self.stopping:
            with contextlib.suppress(Exception):
                self.begin_stop()
                return False
        for record in list(self.workers.values()):
            self._kill(record, Kill.STOP)
        with contextlib.suppress(Exception):
            deadline = self.system.monotonic() + 5.0
            while self.workers and self.system.monotonic() < deadline:
                self.reap_workers()
                self.system.sleep(0.01)
        return True

    def _take_signals(self) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.wake_fds = (wake_read, wake_write)
        self._own_signals()
        self.signal_mask = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS))
        # Registered before the first fork, so that a worker stuck before its own set-up (in an
        # at-fork hook, say) still shows its stack when killed.
        faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)

    def _own_signals(self) -> None:
        """What the handler's import installed goes back to every worker; the supervisor takes
        the signals it handles. Again after a SIGHUP's import, which installs the handler's own
        (a SIGTERM handler that exits, say) in the supervisor too."""
        if not self.wake_fds:
            return  # not running: a unit test's supervisor takes no signal
        signal.set_wakeup_fd(self.wake_fds[1])
        for sig in HANDLED_SIGNALS:
            disposition = signal.getsignal(sig)
            if disposition != self._queue_signal:
                self.dispositions[sig] = disposition
                signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _sleep(self) -> None:
        now = self.system.monotonic()
        timeout = TICK_S
        if self.spawn_after > now:
            timeout = min(timeout, self.spawn_after - now)
        if self.stopping:
            timeout = min(timeout, max(self.stop_deadline - now, 0.0))
        if not self.wake_fds:
            return
        try:
            select.select([self.wake_fds[0]], [], [], max(timeout, 0.0))
            os.read(self.wake_fds[0], 4096)
        except (BlockingIOError, InterruptedError):
            pass

    def handle_signals(self) -> None:
        """Act on the signals queued since the last turn, in the order they came."""
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.handle_sigterm, signal.SIGINT: self.handle_sigterm,
            signal.SIGQUIT: self.handle_sigquit, signal.SIGHUP: self.handle_sighup,
            signal.SIGTTIN: self.handle_sigttin, signal.SIGTTOU: self.handle_sigttou,
            signal.SIGUSR1: self.handle_sigusr1, signal.SIGCHLD: _nothing}
        while self.signals:
            signum = self.signals.popleft()
            handler = handlers.get(signum)
            if handler is None:
                self.handle_ignored(signum)
            else:
                handler()

    # Signals.

    def handle_sigterm(self) -> None:
        """Graceful stop."""
        if self.stopping:
            return
        log.info("forkric: stopping: idle workers now, busy ones within %.0f s",
                 self.config.shutdown_grace_s)
        self.begin_stop()

    def begin_stop(self) -> None:
        """Every worker told to stop: a worker waiting for /next leaves at once, a busy one after
        its invocation; `hurry_stop` kills what is left after the grace."""
        self.stopping = True
        self.stop_deadline = self.system.monotonic() + self.config.shutdown_grace_s
        for pid in self.workers:
            self.system.kill(pid, STOP_SIGNAL)

    def handle_sigquit(self) -> None:
        """Quick stop: every worker killed now; the invocations they held get their errors."""
        log.warning("forkric: SIGQUIT: stopping now; busy workers' invocations get an error")
        self.stopping = True
        self.stop_deadline = self.system.monotonic()
        for record in list(self.workers.values()):
            self._kill(record, Kill.STOP)

    def handle_sigusr1(self) -> None:
        """Every worker's Python stack (all threads) to the log."""
        log.info("forkric: SIGUSR1: the stacks of %d worker(s) follow", len(self.workers))
        for pid in self.workers:
            self.system.kill(pid, STACK_SIGNAL)

    def handle_ignored(self, signum: int) -> None:
        """A signal whose default would end the supervisor and that means nothing to it."""
        log.warning("forkric: signal %s ignored: it means nothing to the supervisor",
                    _signal_name(signum))

    def handle_sigttin(self) -> None:
        """One worker more, up to the scoreboard's capacity."""
        if self.target >= self.board.capacity:
            log.warning("forkric: already at %d workers, the most the scoreboard holds",
                        self.target)
            return
        self._want(self.target + 1)
        log.info("forkric: SIGTTIN: %d worker(s) wanted", self.target)

    def handle_sigttou(self) -> None:
        """One worker fewer, down to 1: the newest is retired after its next invocation."""
        if self.target <= 1:
            return
        self._want(self.target - 1)
        log.info("forkric: SIGTTOU: %d worker(s) wanted", self.target)

    def handle_sighup(self) -> None:
        """Import the handler again; on success replace the workers one at a time, each old
        one retired once its replacement polls. A failed import keeps the old code serving."""
        if self.reload is None or self.stopping:
            return
        # The old code's objects were frozen with the rest: thawed (gc.get_referrers sees only
        # what is not frozen), then collected and frozen again with the new code's.
        gc.unfreeze()
        try:
            self._reimport(self.reload)
        except Exception as exc:
            error, _ = errors.from_exception(exc)
            trace = "".join(error["stackTrace"])
            log.error("%s, the old one serves: %s: %s%s", RELOAD_FAILED, error["errorType"],
                      error["errorMessage"],
                      f"\nTraceback (most recent call last):\n{trace}".rstrip() if trace else "")
            return
        finally:
            gc.collect()
            gc.freeze()
        self.to_replace = list(self.workers)
        log.info("forkric: SIGHUP: handler imported again; replacing %d worker(s) one at a time",
                 len(self.to_replace))

    def _reimport(self, reload: Callable[[], Handler]) -> None:
        """The handler imported again, with the supervisor's signals held: what the import
        installs (its SIGTERM handler, say) goes to the next workers, never to the supervisor."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            self.handler = reload()
            previous = self.inherited  # its threads would run on, mid-work at the next forks
            reimport.end_previous_threads(previous.listeners,
                                          [ref() for ref in previous.executors])
            self.inherited = prefork.prepare(self.config.handler, self.config.import_mode,
                                             self.config.post_fork, self.inherited.task_root)
        finally:
            self._own_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    # Workers.

    def _want(self, count: int) -> None:
        """A new worker count, also on the scoreboard for those who watch it."""
        self.board.count("workers", count - self.target)
        self.target = count

    def spawn_worker(self) -> WorkerRecord | None:
        """Fork one worker into a free slot; None when there is no free slot or the fork failed
        (then the next start waits under the backoff)."""
        index = self._free_index()
        if index is None:
            log.error("forkric: no free scoreboard slot for another worker (%d in use)",
                      len(self.workers))
            self._back_off()
            return None
        start = self._child_start(index)
        self.board.prepare(index)
        # Blocked across the fork: the child takes a signal only once its handlers are in.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*HANDLED_SIGNALS, *CONTROL_SIGNALS})
        try:
            with postfork.listeners_paused(self.inherited):
                pid = self.system.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.board.clear(index)
            log.error("forkric: fork failed: %s", exc)
            self._back_off()
            return None
        if pid == 0:
            os._exit(worker.run_child(start))
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        record = WorkerRecord(pid, index, self.system.monotonic())
        self.workers[pid] = record
        self.board.count("spawns")
        return record

    def _child_start(self, index: int) -> worker.ChildStart:
        return worker.ChildStart(
            index=index, supervisor_pid=self.pid, handler=self.handler,
            runtime_api=self.config.runtime_api, logs=self.logs, board=self.board,
            limits=worker_limits(self.config), environ=self.config.environ,
            dispositions=self.dispositions, close_fds=self.wake_fds,
            signal_mask=self.signal_mask, inherited=self.inherited)

    def reap_workers(self) -> None:
        """Every ended child: a worker's death classified and acted on; any other child (one the
        handler forked and left, adopted by this subreaper) just reaped."""
        while (reaped := self.system.reap()) is not None:
            pid, status, peak_rss_kb = reaped
            record = self.workers.pop(pid, None)
            if record is None:
                continue
            slot = self.board.slot(record.index)
            self.board.clear(record.index)
            fate = classify(slot.state, slot.announced, status, record.killed)
            self._on_death(Death(record, status, peak_rss_kb, slot, fate))

    def _on_death(self, death: Death) -> None:
        record = death.record
        fate = death.fate
        if self.replacing and record.pid == self.replacing[1]:
            # The replacement died: the old worker stays until another replacement is ready.
            self.to_replace.insert(0, self.replacing[0])
            self.replacing = None
        if fate is Fate.RECYCLED:
            self.board.count("recycles")
            self.failures = 0
        elif fate is Fate.API_GONE:
            log.error("forkric: the Runtime API is gone; the runtime exits")
            self.exit_code = 1
            if not self.stopping:
                self.begin_stop()
        elif fate is Fate.CRASHED:
            self._report_crash(death)
        elif fate is Fate.KILLED_STUCK:
            self.board.count("kills")
            self.failures = 0
        elif self.stopping or (fate is Fate.STOPPED and record.retiring):
            pass
        elif fate is Fate.STOPPED:
            log.info("forkric: worker %d (pid %d) stopped without being asked to; starting "
                     "another", record.index, record.pid)
        else:
            self._note_failure(death)

    def _report_crash(self, death: Death) -> None:
        self.board.count("crashes")
        self.failures = 0
        request_id = death.slot.request_id
        error = dead_worker_error(request_id, death.status, self._was_oom(death))
        log.error("forkric: worker %d (pid %d) died (%s) during %s; peak RSS %.0f MB; "
                  "reporting %s and starting another", death.record.index, death.record.pid,
                  death.wording, request_id, death.peak_rss_kb / 1024, error["errorType"])
        try:
            status = self.system.report(self.config.runtime_api, request_id, error)
        except Exception as exc:
            log.error("forkric: could not report the error of %s: %s", request_id, exc)
            return
        if status != 202:
            # forkric local gave it to another worker (the dead one's connection was reset
            # before it read the invocation whole), or it was already answered: not an error.
            log.info("forkric: the Runtime API refused the report of %s (%d): its invocation "
                     "is answered by another worker or was already over", request_id, status)

    def _note_failure(self, death: Death) -> None:
        self.board.count("crashes")
        record = death.record
        if self.system.monotonic() - record.started >= STEADY_S:
            self.failures = 0  # it served well before it died
        delay = self._back_off()
        how = "timed out before its first poll" if record.killed is Kill.START_TIMEOUT else (
            f"died ({death.wording}) " + ("before its first poll" if death.fate is
                                          Fate.START_FAILED else "holding no invocation"))
        log.error("forkric: worker %d (pid %d) %s; %d such end(s) in a row: next start in "
                  "%.1f s", record.index, record.pid, how, self.failures, delay)

    def _back_off(self) -> float:
        self.failures += 1
        delay: float = min(0.1 * 2.0 ** (self.failures - 1), MAX_BACKOFF_S)
        self.spawn_after = self.system.monotonic() + delay
        return delay

    def _was_oom(self, death: Death) -> bool:
        if not os.WIFSIGNALED(death.status) or os.WTERMSIG(death.status) != signal.SIGKILL:
            return False
        if death.record.killed is not None:
            return False
        kills, self.oom_kills = self.oom_kills, _oom_kill_count()
        if self.oom_kills > kills:
            return True
        limit_mb = self.config.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        return limit_mb.isdigit() and death.peak_rss_kb >= int(limit_mb) * 1024

    def _may_spawn(self) -> bool:
        return self.system.monotonic() >= self.spawn_after

    def manage_workers(self) -> None:
        """Start what is missing (under the backoff), retire what is too many."""
        self._advance_replacement()
        active = [r for r in self.workers.values() if not r.retiring]
        wanted = self.target + (1 if self.replacing else 0)
        while len(active) < wanted and self._may_spawn():
            record = self.spawn_worker()
            if record is None:
                break
            active.append(record)
        for record in active[wanted:]:
            self._retire(record)

    def _advance_replacement(self) -> None:
        if self.replacing:
            old, new = self.replacing
            replacement = self.workers.get(new)
            if replacement is not None and replacement.ready:
                if old in self.workers:
                    # Under forkric local an idle old worker leaves its long poll at once (the
                    # service gives back what it was handed), so the next call runs the new code.
                    self._retire(self.workers[old], now=bool(self.config.environ.get(LOCAL_ENV)))
                self.replacing = None
        while self.to_replace and self.replacing is None and self._may_spawn():
            old = self.to_replace.pop(0)
            record = self.workers.get(old)
            if record is None or record.retiring:
                continue
            replacement = self.spawn_worker()
            if replacement is None:
                self.to_replace.insert(0, old)
                return
            self.replacing = (old, replacement.pid)

    def _free_index(self) -> int | None:
        used = {r.index for r in self.workers.values()}
        return next((i for i in range(self.board.capacity) if i not in used), None)

    def _retire(self, record: WorkerRecord, now: bool = False) -> None:
        """Ask a worker to leave once it has served the invocation it waits for or holds (`now`:
        an idle one leaves its long poll at once, the protocol's stop)."""
        record.retiring = True
        self.system.kill(record.pid, STOP_SIGNAL if now else RETIRE_SIGNAL)

    def watch_workers(self) -> None:
        """Each live worker's slot: note the ones that reached their first poll, kill the ones
        past their start timeout or stuck past their invocation's deadline."""
        now = self.system.monotonic()
        now_ms = time.time() * 1000
        for record in list(self.workers.values()):
            if record.killed is not None:
                continue
            slot = self.board.slot(record.index)
            if slot.state is SlotState.STARTING:
                if now - record.started > self.config.start_timeout_s:
                    log.error("forkric: worker %d (pid %d) has not reached its first poll %.0f s "
                              "after its fork; its stack follows, then it is killed and "
                              "replaced", record.index, record.pid, now - record.started)
                    self._dump_and_kill(record, Kill.START_TIMEOUT)
                continue
            record.ready = True
            if slot.invocations and self.failures:
                self.failures = 0  # this code serves: the next failure backs off from scratch
            if self._past_deadline(slot, now_ms, self.config.stuck_grace_s):
                log.error("forkric: worker %d (pid %d) is %.1f s past the deadline of %s; its "
                          "stack follows, then it is killed and replaced", record.index,
                          record.pid, (now_ms - slot.deadline_ms) / 1000, slot.request_id)
                self._dump_and_kill(record, Kill.STUCK)

    @staticmethod
    def _past_deadline(slot: Slot, now_ms: float, grace_s: float) -> bool:
        return slot.state is SlotState.BUSY and slot.deadline_ms > 0 and \
            now_ms - slot.deadline_ms > grace_s * 1000

    def _dump_and_kill(self, record: WorkerRecord, why: Kill) -> None:
        self.system.kill(record.pid, STACK_SIGNAL)
        self.system.sleep(STACK_DUMP_WAIT_S)  # faulthandler writes from the worker's handler
        self._kill(record, why)

    def _kill(self, record: WorkerRecord, why: Kill) -> None:
        record.killed = record.killed or why
        self.system.kill(record.pid, signal.SIGKILL)

    def hurry_stop(self) -> None:
        """While stopping: a worker whose invocation is already past its deadline is killed at
        once (its invocation timed out: nothing to wait for); the rest after the grace."""
        now_ms = time.time() * 1000
        late = self.system.monotonic() >= self.stop_deadline
        for record in list(self.workers.values()):
            if record.killed is not None:
                continue
            if late:
                log.warning("forkric: worker pid %d still busy after the grace period: killed",
                            record.pid)
                self._kill(record, Kill.STOP)
            elif self._past_deadline(self.board.slot(record.index), now_ms, 0.0):
                self._kill(record, Kill.STUCK)
        if late:
            self.stop_deadline = self.system.monotonic() + TICK_S

    def _end_stragglers(self) -> None:
        """Processes the handler forked and left (adopted by this subreaper) end with the
        runtime."""
        try:
            children = psutil.Process().children(recursive=True)
        except Exception:
            return
        if not children:
            return
        log.warning("forkric: %d process(es) the handler started were still running: killed",
                    len(children))
        for child in children:
            self.system.kill(child.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            psutil.wait_procs(children, timeout=2.0)
        while self.system.reap() is not None:
            pass


def _nothing() -> None:
    """SIGCHLD: reap_workers runs on every turn of the loop."""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _become_subreaper() -> None:
    """Orphans of the handler's own forks are adopted by the supervisor, not by init: reaped,
    and ended with the runtime."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


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
