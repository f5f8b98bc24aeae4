"""The runtime child: `python -m forkric run HANDLER`, started as Lambda starts a bootstrap.

Started at once, and again with backoff when it dies as a whole. After an init error it is
started again only when an invocation wants it, as Lambda initialises again on the next invoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from forkric.config import LOCAL_ENV, SETTINGS, Config
from forkric.local import metadata, peers
from forkric.protocol import LMI_SOCKET_ENV, RELOAD_FAILED, SlotState, returncode_end
from forkric.scoreboard import Scoreboard
from forkric.snapstart import INITIALIZATION_TYPE_ENV, SNAP_START

MAX_BACKOFF_S = 5.0
LINE_LIMIT = 1024 * 1024
STEADY_S = 10.0  # a runtime that lived this long starts the backoff from scratch
READY_POLL_S = 0.1
RELOAD_WATCH_S = 600.0  # a reload not done by then is not announced
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Plan:
    handler: str
    workers: int
    timeout_s: float
    log_socket: str
    config: Config
    metadata_token: str = field(default_factory=metadata.new_token)


def wording(returncode: int) -> str:
    """How Lambda words the end of a runtime process: 'signal: killed', 'exit status 1'."""
    return returncode_end(returncode)


def child_environment(plan: Plan, runtime_api: str, status_file: str) -> dict[str, str]:
    """The child's environment: ours, every forkric setting as its variable, and Lambda's own."""
    env = dict(plan.config.environ or os.environ)
    for setting in SETTINGS:
        value = getattr(plan.config, setting.name)
        env.pop(setting.env[0], None)
        if value not in (None, "", 0, 0.0, False):
            env[setting.env[0]] = "1" if value is True else str(value)
    env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "FORKRIC_WORKERS": str(plan.workers),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{plan.timeout_s:g}",
        "FORKRIC_STATUS_FILE": status_file,
        LMI_SOCKET_ENV: plan.log_socket,
        "PYTHONUNBUFFERED": "1",
        metadata.API_ENV: runtime_api,  # served beside the Runtime API
        metadata.TOKEN_ENV: plan.metadata_token,
        LOCAL_ENV: "1",  # the service prints the runtime's init error itself, once
    })
    if plan.config.snap_start:
        env[INITIALIZATION_TYPE_ENV] = SNAP_START
    for name, value in (("AWS_LAMBDA_FUNCTION_NAME", "function"),
                        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008"),
                        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/function"),
                        ("AWS_LAMBDA_LOG_STREAM_NAME", "$LATEST"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        env.setdefault(name, value)
    return env


def _die_with_us() -> Callable[[], None] | None:
    """A pre-exec hook so that the runtime never outlives this service (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        _close_inheritable()

    return hook


def _close_inheritable() -> None:
    """In the child, before the exec: mark every fd above 2 close-on-exec. uvloop (0.23) hands
    its children the fds it did not mark (its stdio socketpair's other ends among them),
    whatever close_fds says; a runtime on Lambda inherits none, and forkric's fork-safety scan
    took them for connections the handler's import opened (and so imported per worker). Marked,
    not closed: uvloop still uses some of them between this hook and the exec."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if fd > 2:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)


class Runtime:
    def __init__(self, plan: Plan, workdir: str, on_line: Callable[[str], None],
                 on_exit: Callable[[int], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.on_line = on_line
        self.on_exit = on_exit  # told the return code of every runtime that ended
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exits: list[int] = []
        self.init_failed = False  # the current (or last) runtime reported an init error
        self.ready = False  # every worker of the current runtime has polled the Runtime API
        self.initialised = False  # a worker of the current runtime asked for an invocation
        self.started_at = 0.0
        self.reload_wanted = ""  # a reload asked for before the workers were ready: why
        self.restart_wanted = False  # a reload asked for while the runtime failed its init
        self.wanted = asyncio.Event()
        self.wanted.set()
        self.stopping = False
        self.status_file = ""
        self.runtime_api = ""
        self._board: Scoreboard | None = None
        self._task: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None  # waits to say the reload is done
        self.reload_failed = False  # the supervisor said the new code failed to import

    def start(self, runtime_api: str) -> None:
        """Start supervising the runtime, which polls the Runtime API at `host:port`."""
        self.runtime_api = runtime_api
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    def want(self) -> None:
        """An invocation waits: start the runtime if it is down after an init error."""
        self.wanted.set()

    def board(self) -> Scoreboard | None:
        """The current runtime's scoreboard, once its supervisor made it."""
        if self._board is None and self.status_file and self.process is not None:
            with contextlib.suppress(OSError, ValueError):
                if os.path.getsize(self.status_file) > 0:
                    self._board = Scoreboard.open(self.status_file)
        return self._board

    def process_of(self, peer: tuple[str, int], ours: tuple[str, int]) -> int:
        """The pid of the runtime's process (its supervisor or a worker) at the `peer` end of a
        loopback connection to `ours`; 0 when it is no process of the runtime."""
        supervisor = self.pid
        inode = peers.socket_inode(peer, ours) if supervisor else None
        if supervisor is None or inode is None:
            return 0
        board = self.board()
        # The workers the scoreboard names first: a cheap read; a worker that connected before
        # its supervisor wrote its slot is found among the supervisor's children.
        known = [pid for pid, _, _ in map(board.holder, range(board.capacity)) if pid > 0] \
            if board is not None else []
        found = peers.holder(inode, [supervisor, *known])
        if found is None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(supervisor).children(recursive=True)
                found = peers.holder(inode, [child.pid for child in children
                                             if child.pid not in known])
        return found or 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    async def _supervise(self) -> None:
        failures = 0
        while not self.stopping:
            await self.wanted.wait()
            if self.stopping:
                break
            started = time.monotonic()
            code = await self._run_once()
            self.exits.append(code)
            if self.init_failed and not (self.restart_wanted or self.reload_wanted):
                self.wanted.clear()  # the next invocation starts it again (on_exit may want it)
            self.restart_wanted = False
            self.reload_wanted = ""
            self.on_exit(code)
            if self.stopping:
                break
            if self.init_failed:
                failures = 0
                continue
            # A clean exit (the runtime was told to stop) is no failure: no backoff for it.
            steady = code == 0 or time.monotonic() - started > STEADY_S
            failures = 0 if steady else failures + 1
            delay = min(0.1 * 2 ** (failures - 1), MAX_BACKOFF_S) if failures else 0.0
            self.on_line(f"forkric local: the runtime ended ({wording(code)}); "
                         f"starting it again in {delay:.1f} s")
            await asyncio.sleep(delay)

    def check_ready(self) -> bool:
        """Ready once the scoreboard shows every wanted worker polling (or serving): said once
        per runtime start, in one line. Called when a worker polls, until it is true."""
        board = self.board()
        if board is None or self.ready:
            return self.ready
        wanted = board.counters()["workers"]
        polling = sum(1 for slot in board.slots()
                      if slot.pid and slot.state in (SlotState.IDLE, SlotState.BUSY))
        if wanted and polling >= wanted:
            self.ready = True
            self.on_line(f"forkric local: ready: {polling} worker(s) polling, "
                         f"{time.monotonic() - self.started_at:.2f} s after the runtime started")
            if self.reload_wanted:
                self.reload(self.reload_wanted)
        return self.ready

    def reload(self, why: str) -> None:
        """Import the handler again and replace the workers one at a time (the supervisor's
        SIGHUP); a runtime down after an init error is started again instead."""
        self.reload_wanted = ""
        process = self.process
        if process is None or process.returncode is not None or self.init_failed:
            self.on_line(f"forkric local: {why}: starting the runtime again")
            self.restart_wanted = True  # even if it is still on its way out
            self.want()
        elif not self.ready:  # still importing: its SIGHUP handler is not installed yet
            self.reload_wanted = why
        else:
            self.on_line(f"forkric local: {why}: importing the handler again, then replacing "
                         f"the workers one at a time")
            if self._reloading is not None:
                self._reloading.cancel()  # superseded: this reload replaces them all again
            self._reloading = asyncio.get_running_loop().create_task(
                self._until_reloaded(process, self._worker_pids(), time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGHUP)

    def _worker_pids(self) -> set[int]:
        board = self.board()
        return {slot.pid for slot in board.slots() if slot.pid} if board is not None else set()

    async def _until_reloaded(self, process: asyncio.subprocess.Process, old: set[int],
                              since: float) -> None:
        """Say in one line when no worker of the old code is left (before that, a call may
        still run it); nothing if the import failed (the supervisor said so), the runtime
        ended, or it takes longer than RELOAD_WATCH_S."""
        self.reload_failed = False
        while time.monotonic() - since < RELOAD_WATCH_S and not self.reload_failed:
            await asyncio.sleep(READY_POLL_S)
            board = self.board()
            if self.process is not process or process.returncode is not None or board is None:
                return
            pids = self._worker_pids()
            polling = sum(1 for slot in board.slots()
                          if slot.pid and slot.state in (SlotState.IDLE, SlotState.BUSY))
            if pids and not pids & old and polling >= board.counters()["workers"]:
                self.on_line(f"forkric local: reloaded: {polling} worker(s) on the new code, "
                             f"{time.monotonic() - since:.2f} s after the change")
                return

    async def _run_once(self) -> int:
        self.starts += 1
        self.init_failed = False
        self.ready = False
        self.initialised = False
        self.started_at = time.monotonic()
        self._new_status_file()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "forkric", "run", self.plan.handler,
            env=child_environment(self.plan, self.runtime_api, self.status_file),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_us(), limit=LINE_LIMIT)
        await self._echo(self.process.stdout)
        return await self.process.wait()

    async def _echo(self, output: asyncio.StreamReader | None) -> None:
        """The supervisor's own output (workers write to their sockets once they run)."""
        while output is not None:
            try:
                raw = await output.readline()
            except ValueError:  # a line over the limit: take it in pieces
                raw = await output.read(LINE_LIMIT)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n").replace("\r", "\n")
            self.reload_failed = self.reload_failed or RELOAD_FAILED in line
            self.on_line(line)

    def _new_status_file(self) -> None:
        # A fresh file per runtime: the supervisor truncates its file, and reading a mapping of a
        # truncated file would kill this process with SIGBUS.
        if self.status_file:
            with contextlib.suppress(OSError):
                os.unlink(self.status_file)
        fd, self.status_file = tempfile.mkstemp(prefix=f"status-{self.starts}-", dir=self.workdir)
        os.close(fd)
        self._board = None

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the runtime, wait for it (busy workers finish), SIGKILL it past the grace."""
        self.stopping = True
        self.wanted.set()
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace_s)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 5.0)

