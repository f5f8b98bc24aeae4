"""The supervisor-worker protocol, in one place.

A worker and its supervisor talk through three channels only:

- the worker's **scoreboard slot** (`SlotState`), which the worker alone writes from its fork to its
  death (the supervisor prepares it before the fork and clears it after the reap);
- **control signals** the supervisor sends a worker (`STOP_SIGNAL`, `RETIRE_SIGNAL`,
  `STACK_SIGNAL`): real-time signals where the platform has them, so that the handler's own
  signal handlers (SIGTERM, SIGUSR1, ...) stay the handler's;
- the worker's **exit status** (`Exit`), believed only when the slot says the worker chose it: a
  handler can call `sys.exit(90)` too.

`classify` turns what a dead worker left (slot state, announced exit, wait status) into its
`Fate`; `process_end` and `dead_worker_error` word a death as Lambda does. `forkric.local` imports
this module, never the supervisor or the worker.
"""

from __future__ import annotations

import enum
import os
import signal

from forkric import errors

# Lambda's buffered payload limits, bytes: 6 MiB in; a response (or an error) may be 100 bytes
# more (the Runtime API's own figure, as the RIE and Lambda answer it).
REQUEST_LIMIT = 6 * 1024 * 1024
RESPONSE_LIMIT = REQUEST_LIMIT + 100

# What the supervisor logs when a SIGHUP's import fails (forkric local waits for the workers'
# replacement until it is done, or until it reads this).
RELOAD_FAILED = "forkric: SIGHUP: the handler failed to import again"


class SlotState(enum.IntEnum):
    """A worker's state as its scoreboard slot holds it (one byte)."""

    EMPTY = 0  # no worker
    STARTING = 1  # forked, not yet at its first poll of /next
    IDLE = 2  # polling /next
    BUSY = 3  # running an invocation: the slot holds its request id and deadline
    EXITING = 4  # leaving on its own: the slot holds the exit status it announced

    @property
    def label(self) -> str:
        """The name tools and the status endpoint show: 'idle', 'busy', ..."""
        return self.name.lower()


class Exit(enum.IntEnum):
    """The exit statuses of a worker that leaves on its own, announced in its slot first."""

    STOPPED = 0  # told to stop or retire, or the supervisor went away
    RECYCLE = 90  # over its memory or request limit: replace me, nothing is lost
    API_GONE = 91  # the Runtime API asked the runtime to exit, or cannot be reached


def _control_signal(offset: int, fallback: signal.Signals) -> int:
    # Counted down from SIGRTMAX: libraries that use real-time signals count up from SIGRTMIN.
    rtmax = getattr(signal, "SIGRTMAX", None)
    return int(rtmax) - offset if rtmax is not None else int(fallback)


# Supervisor -> worker. The worker handles these and nothing else of the supervisor's.
STOP_SIGNAL = _control_signal(0, signal.SIGUSR2)  # stop: now if waiting, after the invocation
RETIRE_SIGNAL = _control_signal(1, signal.SIGWINCH)  # leave after the next invocation
STACK_SIGNAL = _control_signal(2, signal.SIGUSR1)  # write every thread's stack to stderr

# Lambda Managed Instances: each worker's stdout and stderr are its own connections to this socket.
LMI_SOCKET_ENV = "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET"

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


def signal_end(signum: int, core_dumped: bool = False) -> str:
    """'signal: killed', 'signal: segmentation fault (core dumped)', 'signal: signal 60'."""
    words = SIGNAL_WORDS.get(signum) or f"signal {signum}"
    return f"signal: {words}{' (core dumped)' if core_dumped else ''}"


def process_end(status: int) -> str:
    """Lambda's wording of a process's end from its wait status: 'signal: killed', 'exit status 3'.
    """
    if os.WIFSIGNALED(status):
        return signal_end(os.WTERMSIG(status), os.WCOREDUMP(status))
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def returncode_end(returncode: int) -> str:
    """The same from a `subprocess` return code (negative: killed by that signal)."""
    return signal_end(-returncode) if returncode < 0 else f"exit status {returncode}"


def dead_worker_error(request_id: str, status: int, out_of_memory: bool = False) -> dict[str, str]:
    """The error Lambda gives the invoker of an invocation whose runtime process died, from the
    process's wait status: `Runtime.ExitError` (or `Runtime.OutOfMemory`), and "Runtime exited
    without providing a reason" for a clean exit 0, as the RIE words it."""
    error_type = errors.OUT_OF_MEMORY if out_of_memory else errors.EXIT_ERROR
    clean = os.WIFEXITED(status) and os.waitstatus_to_exitcode(status) == 0
    return {"errorType": error_type,
            "errorMessage": runtime_exited(request_id, None if clean else process_end(status))}


def response_too_large(size: int) -> dict[str, str]:
    """Lambda's error for a result (or an error) of `size` bytes over `RESPONSE_LIMIT`."""
    return {"errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed "
                            f"payload size ({RESPONSE_LIMIT} bytes)."}


def runtime_exited(request_id: str, end: str | None) -> str:
    """Lambda's message for an invocation whose runtime process ended: `end` is how it ended
    ('signal: killed', 'exit status 3'), None for a clean exit 0."""
    how = "without providing a reason" if end is None else f"with error: {end}"
    return f"RequestId: {request_id} Error: Runtime exited {how}"


class Kill(enum.Enum):
    """Why the supervisor killed a worker, when it did."""

    STUCK = "stuck"  # busy past its deadline and the grace
    START_TIMEOUT = "start timeout"  # never reached its first poll
    STOP = "stop"  # still running when the stop's grace ran out, or a quick stop


class Fate(enum.Enum):
    """What a worker's death means to the supervisor."""

    RECYCLED = "recycled"  # left on its own for a fresh fork: replace at once
    STOPPED = "stopped"  # left on its own because it was told to (or told by someone else)
    API_GONE = "api gone"  # the Runtime API told the runtime to exit: the runtime stops
    CRASHED = "crashed"  # died during an invocation: report its error, replace at once
    KILLED_STUCK = "killed stuck"  # the invocation already timed out: replace at once
    START_FAILED = "start failed"  # died (or was killed) before its first poll: back off
    LOST = "lost"  # died between invocations, not by the protocol: back off


def classify(state: SlotState, announced: int, status: int, killed: Kill | None = None) -> Fate:
    """The fate of a reaped worker, from the state its slot was left in, the exit status it
    announced there (meaningful in EXITING only), its wait status, and whether the supervisor
    killed it. A protocol exit counts only when the worker announced it and then exited with it:
    whatever exit status a handler produces during an invocation is a crash of that invocation."""
    if killed is Kill.STUCK and state is SlotState.BUSY:
        return Fate.KILLED_STUCK
    if state is SlotState.BUSY:
        return Fate.CRASHED
    if killed is Kill.START_TIMEOUT or state in (SlotState.STARTING, SlotState.EMPTY):
        return Fate.START_FAILED
    code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None
    if state is SlotState.EXITING and code == announced:
        if code == Exit.RECYCLE:
            return Fate.RECYCLED
        if code == Exit.API_GONE:
            return Fate.API_GONE
        return Fate.STOPPED
    return Fate.LOST

