"""The supervisor's pure parts: worker limits, Lambda's wording of a dead runtime process."""

from __future__ import annotations

import os
import random
import signal

import pytest

from forkric.config import Config
from forkric.protocol import dead_worker_error
from forkric.supervisor import worker_limits


def test_request_limit_is_jittered_per_worker_within_bounds() -> None:
    config = Config(max_requests=100, max_requests_jitter=10)
    rng = random.Random(7)
    limits = [worker_limits(config, rng).max_requests for _ in range(200)]
    assert min(limits) >= 100 and max(limits) <= 110
    assert len(set(limits)) > 5  # workers leave at different times


def test_no_request_limit_means_none_even_with_jitter() -> None:
    assert worker_limits(Config(max_requests_jitter=10)).max_requests == 0


def test_memory_limit_and_function_timeout() -> None:
    limits = worker_limits(Config(max_worker_memory_mb=1.5, timeout_s=2.5))
    assert limits.max_uss_kb == 1536
    assert limits.timeout_ms == 2500


# A wait status whose low 7 bits are a signal number means "killed by it"; 0x80 adds a core dump.
@pytest.mark.parametrize(("status", "message"), [
    (signal.SIGKILL, "Runtime exited with error: signal: killed"),
    (signal.SIGSEGV, "Runtime exited with error: signal: segmentation fault"),
    (signal.SIGSEGV | 0x80,
     "Runtime exited with error: signal: segmentation fault (core dumped)"),
    (signal.SIGABRT, "Runtime exited with error: signal: aborted"),
    (3 << 8, "Runtime exited with error: exit status 3"),
    (0, "Runtime exited without providing a reason"),
])
def test_exit_error_words_the_death_as_lambda_does(status: int, message: str) -> None:
    assert os.WIFSIGNALED(status) or os.WIFEXITED(status)
    error = dead_worker_error("r-1", status, out_of_memory=False)
    assert error == {"errorType": "Runtime.ExitError",
                     "errorMessage": f"RequestId: r-1 Error: {message}"}


def test_out_of_memory_error_type() -> None:
    error = dead_worker_error("r-1", signal.SIGKILL, out_of_memory=True)
    assert error["errorType"] == "Runtime.OutOfMemory"


def test_more_workers_than_the_scoreboard_holds_are_clamped_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    from forkric.logs import Logs
    from forkric.scoreboard import CAPACITY
    from forkric.supervisor import Supervisor

    supervisor = Supervisor(Config(workers=CAPACITY + 10), lambda e, c: e, Logs({}))
    assert supervisor.target == CAPACITY
    assert f"{CAPACITY + 10} workers asked for" in caplog.text


def test_the_wanted_worker_count_is_on_the_scoreboard() -> None:
    from forkric.logs import Logs
    from forkric.supervisor import Supervisor

    supervisor = Supervisor(Config(workers=3), lambda e, c: e, Logs({}))
    assert supervisor.board.counters()["workers"] == 3
    supervisor.handle_sigttin()
    assert supervisor.board.counters()["workers"] == 4
    supervisor.handle_sigttou()
    supervisor.handle_sigttou()
    assert (supervisor.target, supervisor.board.counters()["workers"]) == (2, 2)
