"""The supervisor's policy with fork, kill, wait and the Runtime API report replaced by a fake
system: no processes, no root. A fake worker is its scoreboard slot, written as the real one is."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections import deque

import pytest

from forkric.config import Config
from forkric.logs import Logs
from forkric.protocol import RETIRE_SIGNAL, STACK_SIGNAL, STOP_SIGNAL, Exit, SlotState
from forkric.scoreboard import Scoreboard, WorkerSlot
from forkric.supervisor import REPORT_TIMEOUT_S, Supervisor, System


class FakeSystem(System):
    def __init__(self, board: Scoreboard) -> None:
        self.board = board
        self.next_pid = 1000
        self.forks: list[int] = []
        self.sent: list[tuple[int, int]] = []
        self.ended: deque[tuple[int, int, int]] = deque()
        self.reports: list[tuple[str, dict[str, str]]] = []
        self.report_status = 202
        self.now = 100.0
        self.fork_error: OSError | None = None
        self.in_child = None  # called with (pid, slot) "in the child" before fork returns

    def fork(self) -> int:
        if self.fork_error is not None:
            raise self.fork_error
        self.next_pid += 1
        self.forks.append(self.next_pid)
        if self.in_child is not None:
            index = next(s.index for s in self.board.slots()
                         if s.state is SlotState.STARTING and s.pid == 0)
            self.in_child(self.next_pid, WorkerSlot(self.board, index))
        return self.next_pid

    def kill(self, pid: int, sig: int) -> None:
        self.sent.append((pid, sig))

    def reap(self) -> tuple[int, int, int] | None:
        return self.ended.popleft() if self.ended else None

    def report(self, runtime_api: str, request_id: str, error: dict[str, str]) -> int:
        self.reports.append((request_id, error))
        return self.report_status

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(workers: int = 2, capacity: int = 8, **settings: object) -> tuple[Supervisor, FakeSystem]:
    board = Scoreboard.create(capacity=capacity)
    system = FakeSystem(board)
    config = Config(workers=workers, runtime_api="127.0.0.1:9", **settings)  # type: ignore[arg-type]
    return Supervisor(config, lambda e, c: e, Logs({}), system=system, board=board), system


def slot_of(sup: Supervisor, pid: int) -> WorkerSlot:
    """The worker `pid` as its own slot writer, claimed as the real worker does first."""
    slot = WorkerSlot(sup.board, sup.workers[pid].index)
    slot.claim(pid)
    return slot


def start_all(sup: Supervisor) -> list[int]:
    """Fork the wanted workers and bring each to its first poll."""
    sup._turn()
    pids = list(sup.workers)
    for pid in pids:
        slot_of(sup, pid).idle()
    sup._turn()
    return pids


def exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize("code", [90, 91, 0, 5])
def test_any_exit_status_during_an_invocation_gets_its_error_and_a_fresh_worker(code: int) -> None:
    """Row 1: sys.exit(91) stopped the whole runtime, sys.exit(90) passed for a recycle."""
    sup, system = make()
    first, _ = start_all(sup)
    slot_of(sup, first).busy("req-1", int(time.time() * 1000) + 60_000)
    system.ended.append((first, exited(code), 2048))
    sup._turn()
    assert not sup.stopping and sup.exit_code == 0
    assert [rid for rid, _ in system.reports] == ["req-1"]
    error = system.reports[0][1]
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(
        "without providing a reason" if code == 0 else f"with error: exit status {code}")
    assert len(sup.workers) == 2 and first not in sup.workers
    assert sup.board.counters()["recycles"] == 0


def test_announced_exits_are_the_protocol() -> None:
    sup, system = make()
    first, second = start_all(sup)
    slot_of(sup, first).exiting(Exit.RECYCLE)
    system.ended.append((first, exited(Exit.RECYCLE), 0))
    sup._turn()
    assert sup.board.counters()["recycles"] == 1 and not system.reports
    assert len(sup.workers) == 2 and sup.failures == 0
    slot_of(sup, second).exiting(Exit.API_GONE)
    system.ended.append((second, exited(Exit.API_GONE), 0))
    sup._turn()
    assert sup.stopping and sup.exit_code == 1
    assert all((pid, STOP_SIGNAL) in system.sent for pid in sup.workers)


def test_sighup_replacements_dying_at_start_back_off() -> None:
    """Row 2: 600 to 1,000 failed starts in 2 s while the log said 'next start in 30.0 s'."""
    sup, system = make()
    sup.reload = lambda: (lambda e, c: e)
    start_all(sup)
    forks_before = len(system.forks)
    sup.signals.append(signal.SIGHUP)
    started = system.now
    while system.now - started < 2.0:
        sup._turn()
        for record in list(sup.workers.values()):
            if not record.ready:
                system.ended.append((record.pid, exited(1), 0))  # dies before its first poll
        system.now += 0.002
    starts = len(system.forks) - forks_before
    assert 3 <= starts <= 6, starts  # 0.1, 0.2, 0.4, 0.8 s apart
    assert sup.failures >= 4


def test_the_supervisor_never_writes_a_slot_after_the_fork() -> None:
    """Row 3: the slot written after fork() returned overwrote what the child already wrote;
    its crash then passed for a death holding no invocation and was answered by a timeout."""
    sup, system = make(workers=1)

    def child_runs_first(pid: int, slot: WorkerSlot) -> None:
        slot.claim(pid)
        slot.idle()
        slot.busy("req-early", int(time.time() * 1000) + 60_000)

    system.in_child = child_runs_first
    sup._turn()
    (pid,) = sup.workers
    seen = sup.board.slot(sup.workers[pid].index)
    assert (seen.pid, seen.state, seen.request_id) == (pid, SlotState.BUSY, "req-early")
    system.ended.append((pid, signal.SIGKILL, 0))
    sup._turn()
    assert [rid for rid, _ in system.reports] == ["req-early"]


def test_usr1_dumps_every_worker_usr2_is_ignored_quit_stops_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Row 4: USR1, USR2 or QUIT to the supervisor killed it and every worker."""
    sup, system = make(workers=3)
    pids = start_all(sup)
    sup.signals.extend([signal.SIGUSR1, signal.SIGUSR2])
    sup._turn()
    assert {(pid, STACK_SIGNAL) for pid in pids} <= set(system.sent)
    assert not sup.stopping
    assert "SIGUSR2 ignored" in caplog.text
    slot_of(sup, pids[0]).busy("req-q", int(time.time() * 1000) + 60_000)
    sup.signals.append(signal.SIGQUIT)
    sup._turn()
    assert sup.stopping
    assert {(pid, signal.SIGKILL) for pid in pids} <= set(system.sent)
    for pid in pids:
        system.ended.append((pid, signal.SIGKILL, 0))
    assert sup._turn() is True  # stopped, every worker gone
    assert [rid for rid, _ in system.reports] == ["req-q"]


def test_no_free_slot_and_failed_forks_back_off(caplog: pytest.LogCaptureFixture) -> None:
    """Row 5: a full scoreboard raised StopIteration out of the main loop; so did fork's
    OSError."""
    sup, system = make(workers=2, capacity=2)
    sup.reload = lambda: (lambda e, c: e)
    start_all(sup)
    sup.signals.append(signal.SIGHUP)  # a replacement needs a third slot
    sup._turn()
    assert "no free scoreboard slot" in caplog.text
    assert sup.spawn_after > system.now and len(sup.workers) == 2
    sup2, system2 = make(workers=1)
    system2.fork_error = OSError(12, "Cannot allocate memory")
    sup2._turn()
    assert not sup2.workers and sup2.spawn_after > system2.now
    assert "fork failed" in caplog.text
    system2.fork_error = None
    system2.now = sup2.spawn_after
    sup2._turn()
    assert len(sup2.workers) == 1


def test_an_unexpected_failure_stops_gracefully_then_for_good(
        caplog: pytest.LogCaptureFixture) -> None:
    sup, system = make(workers=2)
    pids = start_all(sup)
    try:
        raise RuntimeError("a bug in the loop")
    except RuntimeError:
        assert sup._fault() is False
    assert "a bug in the loop" in caplog.text and sup.stopping and sup.exit_code == 1
    assert {(pid, STOP_SIGNAL) for pid in pids} <= set(system.sent)
    try:
        raise RuntimeError("again")
    except RuntimeError:
        assert sup._fault() is True
    assert {(pid, signal.SIGKILL) for pid in pids} <= set(system.sent)


def test_a_worker_past_its_deadline_gets_no_shutdown_grace() -> None:
    """Row 7: a stop right after an invocation timed out waited the whole --shutdown-grace."""
    sup, system = make(workers=2, shutdown_grace_s=30.0, stuck_grace_s=60.0)
    late, busy = start_all(sup)
    now_ms = int(time.time() * 1000)
    slot_of(sup, late).busy("req-late", now_ms - 1000)
    slot_of(sup, busy).busy("req-busy", now_ms + 60_000)
    sup._turn()
    assert (late, signal.SIGKILL) not in system.sent  # within the stuck grace: not yet killed
    sup.signals.append(signal.SIGTERM)
    sup._turn()
    assert (late, signal.SIGKILL) in system.sent
    assert (busy, signal.SIGKILL) not in system.sent
    system.ended.append((late, signal.SIGKILL, 0))
    sup._turn()
    assert not system.reports  # its invocation had already timed out


def test_a_stuck_worker_is_killed_with_its_stack_first() -> None:
    sup, system = make(workers=1, stuck_grace_s=1.0)
    (pid,) = start_all(sup)
    slot_of(sup, pid).busy("req-hung", int(time.time() * 1000) - 1500)
    sup._turn()
    assert system.sent[-2:] == [(pid, STACK_SIGNAL), (pid, signal.SIGKILL)]
    system.ended.append((pid, signal.SIGKILL, 0))
    sup._turn()
    assert sup.board.counters()["kills"] == 1 and not system.reports
    assert len(sup.workers) == 1


def test_a_worker_that_never_reaches_its_first_poll_is_killed_and_replaced_under_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    """Row 12: a worker stuck before its first poll stayed `starting` for ever."""
    sup, system = make(workers=1, start_timeout_s=5.0)
    sup._turn()
    (pid,) = sup.workers
    slot_of(sup, pid)  # claimed, never idle
    system.now += 4.0
    sup._turn()
    assert (pid, signal.SIGKILL) not in system.sent
    system.now += 2.0
    sup._turn()
    assert system.sent[-2:] == [(pid, STACK_SIGNAL), (pid, signal.SIGKILL)]
    system.ended.append((pid, signal.SIGKILL, 0))
    sup._turn()
    assert "has not reached its first poll" in caplog.text
    assert "timed out before its first poll" in caplog.text
    assert sup.spawn_after > system.now and not sup.workers  # replaced after the backoff
    system.now = sup.spawn_after
    sup._turn()
    assert len(sup.workers) == 1


def test_ttou_retires_and_the_retired_exit_is_expected(caplog: pytest.LogCaptureFixture) -> None:
    sup, system = make(workers=2)
    pids = start_all(sup)
    sup.signals.append(signal.SIGTTOU)
    sup._turn()
    retired = [pid for pid, sig in system.sent if sig == RETIRE_SIGNAL]
    assert len(retired) == 1 and retired[0] in pids
    slot_of(sup, retired[0]).exiting(Exit.STOPPED)
    system.ended.append((retired[0], exited(0), 0))
    caplog.clear()
    sup._turn()
    assert len(sup.workers) == 1 and sup.failures == 0 and "ERROR" not in caplog.text


def test_deaths_between_invocations_back_off_until_a_worker_serves(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sup, system = make(workers=1)
    (pid,) = start_all(sup)
    system.ended.append((pid, exited(7), 0))  # idle, not announced
    sup._turn()
    assert sup.failures == 1 and "holding no invocation" in caplog.text
    system.now = sup.spawn_after
    sup._turn()
    (pid,) = sup.workers
    slot = slot_of(sup, pid)
    slot.idle()
    slot.busy("r", 0)
    slot.done()
    sup._turn()
    assert sup.failures == 0


def test_the_report_of_a_dead_workers_invocation_is_bounded() -> None:
    """Row 8: a Runtime API that accepts and never answers froze reaping and signals."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        held: list[socket.socket] = []
        thread = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
        thread.start()
        started = time.monotonic()
        with pytest.raises(OSError):
            System().report(f"127.0.0.1:{server.getsockname()[1]}", "req",
                            {"errorType": "Runtime.ExitError", "errorMessage": "x"})
        assert time.monotonic() - started < REPORT_TIMEOUT_S + 1.0
        for conn in held:
            conn.close()


def test_a_refused_report_is_said_to_be_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A worker killed as its invocation's body arrived is reported, but forkric local has
    given that invocation to another worker (its connection was reset unread): 403. The log
    said only 'reporting Runtime.ExitError', as if the invoker got it."""
    sup, system = make()
    first, _ = start_all(sup)
    slot_of(sup, first).busy("req-r", int(time.time() * 1000) + 60_000)
    system.report_status = 403
    system.ended.append((first, -9 & 0x7F, 2048))
    with caplog.at_level(logging.INFO, logger="forkric"):
        sup._turn()
    assert [rid for rid, _ in system.reports] == ["req-r"]
    assert "the Runtime API refused the report of req-r (403)" in caplog.text
