"""forkric.protocol: how a worker's death is read, and how Lambda words it."""

from __future__ import annotations

import signal

import pytest

from forkric.protocol import (
    RETIRE_SIGNAL,
    STACK_SIGNAL,
    STOP_SIGNAL,
    Exit,
    Fate,
    Kill,
    SlotState,
    classify,
    dead_worker_error,
    process_end,
    returncode_end,
)

BUSY, IDLE, EXITING, STARTING = SlotState.BUSY, SlotState.IDLE, SlotState.EXITING, \
    SlotState.STARTING


def exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize("code", [0, 1, 3, 90, 91, 255])
def test_any_exit_during_an_invocation_is_a_crash_of_it(code: int) -> None:
    """Row 1: a handler's sys.exit(90) or (91) is no recycle and no 'Runtime API gone'."""
    assert classify(BUSY, Exit.API_GONE, exited(code)) is Fate.CRASHED
    assert classify(BUSY, 0, exited(code)) is Fate.CRASHED


@pytest.mark.parametrize(("announced", "fate"), [
    (Exit.STOPPED, Fate.STOPPED), (Exit.RECYCLE, Fate.RECYCLED), (Exit.API_GONE, Fate.API_GONE)])
def test_a_protocol_exit_counts_only_when_announced_and_kept(announced: Exit, fate: Fate) -> None:
    assert classify(EXITING, announced, exited(announced)) is fate
    # announced one thing, left with another (an atexit hook's os._exit(91), say)
    other = Exit.API_GONE if announced != Exit.API_GONE else Exit.RECYCLE
    assert classify(EXITING, announced, exited(other)) is Fate.LOST
    assert classify(EXITING, announced, signal.SIGKILL) is Fate.LOST


@pytest.mark.parametrize("code", [0, 90, 91])
def test_protocol_statuses_from_an_idle_worker_are_not_believed(code: int) -> None:
    """A handler's thread calling os._exit(91) between invocations is not the protocol."""
    assert classify(IDLE, 0, exited(code)) is Fate.LOST


def test_deaths_before_the_first_poll_and_kills() -> None:
    assert classify(STARTING, 0, exited(0)) is Fate.START_FAILED
    assert classify(STARTING, 0, signal.SIGKILL, Kill.START_TIMEOUT) is Fate.START_FAILED
    assert classify(BUSY, 0, signal.SIGKILL, Kill.STUCK) is Fate.KILLED_STUCK
    # killed at the end of the stop's grace while busy: its invocation still gets its error
    assert classify(BUSY, 0, signal.SIGKILL, Kill.STOP) is Fate.CRASHED


@pytest.mark.parametrize(("status", "words"), [
    (signal.SIGKILL, "signal: killed"),
    (signal.SIGSEGV | 0x80, "signal: segmentation fault (core dumped)"),
    (exited(3), "exit status 3"),
    (signal.SIGRTMAX - 1 if hasattr(signal, "SIGRTMAX") else 99, None),
])
def test_process_end_wording(status: int, words: str | None) -> None:
    assert process_end(status) == (words or f"signal: signal {status}")


def test_returncode_wording_matches() -> None:
    assert returncode_end(-9) == "signal: killed"
    assert returncode_end(2) == "exit status 2"


def test_a_clean_exit_during_an_invocation_is_worded_as_the_rie_does() -> None:
    """Row 10: sys.exit() and sys.exit(0) in a handler."""
    assert dead_worker_error("r", exited(0))["errorMessage"] == \
        "RequestId: r Error: Runtime exited without providing a reason"
    assert dead_worker_error("r", exited(91))["errorMessage"] == \
        "RequestId: r Error: Runtime exited with error: exit status 91"


def test_control_signals_are_not_ones_a_handler_uses() -> None:
    """Row 11: forkric's own control leaves SIGTERM, SIGUSR1, SIGUSR2, SIGHUP to the handler."""
    used = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP,
            signal.SIGCHLD, signal.SIGALRM, signal.SIGQUIT}
    controls = {STOP_SIGNAL, RETIRE_SIGNAL, STACK_SIGNAL}
    assert len(controls) == 3
    assert not controls & used
    assert all(signal.SIGRTMIN <= sig <= signal.SIGRTMAX for sig in controls)


def test_slot_state_labels() -> None:
    assert [s.label for s in SlotState] == ["empty", "starting", "idle", "busy", "exiting"]
