"""What the supervisor does around the handler's import so that each worker can act as a process
that imported the handler itself (the first principle; DESIGN.md, "Fork safety").

Before the import (`importing`): warm what forkric's workers need (codecs, name resolution), so a
user thread caught mid-import at the fork cannot deadlock forkric's own connect; keep OpenMP to one
thread unless the user set it (a libgomp pool made before a fork hangs every child); note which
`random.Random` instances are seeded from the OS.

After the import, before the first fork (`prepare`): let threads finish the imports they are in;
flush buffered files; shut down the TCP connections the import opened (a pooled client then
reconnects in each worker, as after a server-side close; nothing is written on them, so no
protocol goodbye crosses); find what each worker repairs (thread pools, log listeners, generators,
anonymous temp files) and what no repair reaches (other threads, other connections, half-imported
modules), which the start-up report names and which `--import-mode auto` answers by importing in
each worker.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import ctypes
import fcntl
import gc
import io
import itertools
import logging
import os
import random
import re
import socket
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from forkric import hooks, reimport, startup_report

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from logging.handlers import QueueListener

log = logging.getLogger("forkric")

ONCE, PER_WORKER, AUTO = "once", "per-worker", "auto"  # config.IMPORT_MODES
OMP_ENV = "OMP_NUM_THREADS"
IMPORT_SETTLE_S = 5.0  # how long threads may take to finish the imports they are in
# Libraries whose threads are made again in each process by the libraries themselves (a pid check
# or os.register_at_fork): their threads need nothing from forkric.
FORK_AWARE = ("sentry_sdk.", "opentelemetry.", "ddtrace.", "grpc.")
OPENMP_LIBRARY = re.compile(r"/lib(?:g|i5|)omp[^/]*\.so")
_BUFFERED = (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)
# Connections of clients that find a shut-down socket closed and open another (their socket
# attribute: `sock` or `_sock`): urllib3's (under requests and botocore) checks a pooled
# connection before reusing it; redis-py also checks its pid. A bare http.client connection
# does neither: its next request raises BrokenPipeError, so it is reported.
RECONNECTING = (("urllib3.connection", "HTTPConnection"),
                ("redis.connection", "AbstractConnection"))

# random.Random instances made during the import and seeded from the OS (Random() without a
# seed): they get a fresh seed in each worker. An explicit seed is the user's wish and is kept.
_entropy_seeded: weakref.WeakSet[random.Random] = weakref.WeakSet()
# The logging configuration before the process's first import of the handler: what each later
# import (SIGHUP's in the supervisor, the per-worker one) starts from, as a fresh process would.
_logging_before_import: reimport.LoggingState | None = None
# What each fd named before the import: sockets the process already had (forkric local's log
# streams, anything its parent handed down) are not the import's and are left alone.
_open_before: dict[int, str] = {}


@dataclass
class Finding:
    """One thing the import left that forkric cannot make safe by itself: a start-up report line."""

    kind: str  # "thread", "socket", "file", "module"
    what: str  # "thread 'poller' (target app.poll)", "TCP connection to 127.0.0.1:5432 (fd 5)"
    done: str  # what forkric did about it
    advice: str  # what the user can do


@dataclass
class Inheritance:
    """What the handler's import left behind, found before the first fork: what each worker
    repairs, and what the start-up report names."""

    mode: str = ONCE  # ONCE or PER_WORKER, after AUTO is decided
    handler_name: str = ""
    task_root: str = ""
    post_fork_setting: str = ""
    executors: list[weakref.ref[ThreadPoolExecutor]] = field(default_factory=list)
    listeners: list[QueueListener] = field(default_factory=list)
    generators: list[Any] = field(default_factory=list)  # numpy Generator / RandomState
    openmp: list[str] = field(default_factory=list)  # paths of loaded OpenMP runtimes
    give_back_openmp: bool = False  # OpenMP was kept to one thread by forkric, not the user
    shut_down: list[str] = field(default_factory=list)  # connections shut down, by peer
    findings: list[Finding] = field(default_factory=list)


# Before the import.

def warm_up(runtime_api: str = "") -> None:
    """Load now what a worker's first connect would otherwise load lazily, under locks that a
    user thread may hold at the fork: the codec registry and IDNA codec, and the resolver's NSS
    modules (glibc dlopens them on first use)."""
    for name in ("idna", "utf-8", "latin-1", "ascii"):
        codecs.lookup(name)
    "forkric.invalid".encode("idna")
    host, _, port = runtime_api.rpartition(":")
    for target in {(host or "127.0.0.1", port or "80"), ("localhost", "80")}:
        with contextlib.suppress(OSError, UnicodeError):
            socket.getaddrinfo(*target, type=socket.SOCK_STREAM)


# The atexit hooks the last import registered: each worker's, as in a process that imported the
# handler itself; the supervisor drops them before it exits (`drop_import_exit_hooks`).
import_exit_hooks: list[Callable[..., Any]] = []


def drop_import_exit_hooks() -> None:
    """In the supervisor as it ends: the import's atexit hooks ran in every worker; under
    awslambdaric no extra process runs them."""
    for func in import_exit_hooks:
        atexit.unregister(func)
    import_exit_hooks.clear()


@contextlib.contextmanager
def importing(runtime_api: str = "", cap_openmp: bool = True) -> Iterator[None]:
    """Around the handler's import: warmed, OpenMP held to one thread unless the user set
    `OMP_NUM_THREADS`, Random() instances noted.

    The cap is put in the C environment only (os.putenv), where libgomp reads it when it loads:
    the handler's `os.environ` stays as the user's, and a value the import sets is kept.
    """
    warm_up(runtime_api)
    _open_before.clear()
    _open_before.update(open_fds())
    capped = cap_openmp and OMP_ENV not in os.environ
    if capped:
        os.putenv(OMP_ENV, "1")
    original_init = random.Random.__init__

    def noting_init(self: random.Random, x: Any = None) -> None:
        original_init(self, x)
        if x is None:
            _entropy_seeded.add(self)

    random.Random.__init__ = noting_init  # type: ignore[method-assign]
    original_register = atexit.register
    noted: list[Callable[..., Any]] = []

    def noting_register(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        noted.append(func)
        return original_register(func, *args, **kwargs)

    atexit.register = noting_register  # type: ignore[assignment]
    global _logging_before_import
    logging_before = reimport.capture_logging()
    if _logging_before_import is None:
        _logging_before_import = logging_before
    else:  # imported before in this process: its handlers would be added again
        reimport.restore_logging(_logging_before_import)
    try:
        yield
    except BaseException:
        reimport.restore_logging(logging_before)  # the old code keeps serving as it was
        raise
    finally:
        random.Random.__init__ = original_init  # type: ignore[method-assign]
        atexit.register = original_register
        if capped and OMP_ENV not in os.environ:
            os.unsetenv(OMP_ENV)
    # Imported (a failed import leaves everything as it was): after a re-import (SIGHUP, or a
    # per-worker import) the previous import's hooks are no longer this process's.
    for func in import_exit_hooks:
        if func not in noted:
            atexit.unregister(func)
    import_exit_hooks[:] = noted
    if logging_before is not _logging_before_import:  # the previous import's own handlers
        reimport.close_dropped(reimport.handlers_of(logging_before),
                               reimport.capture_logging(), _logging_before_import)


# After the import.

def prepare(handler_name: str, import_mode: str = AUTO, post_fork_setting: str = "",
            task_root: str = "") -> Inheritance:
    """Repairs before the first fork, and what the workers and the start-up report need.

    Raises LambdaError when the post_fork setting names nothing importable (an init error).
    """
    found = Inheritance(handler_name=handler_name, post_fork_setting=post_fork_setting,
                        task_root=task_root or os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
    hooks.load_setting(post_fork_setting)
    _settle_imports(found)
    kept_alive_fds = _scan_objects(found)
    _classify_threads(found)
    _shut_down_connections(found, kept_alive_fds)
    _find_shared_files(found)
    _find_openmp(found)
    found.mode = _decide_mode(import_mode, found)
    startup_report.log_report(found, import_mode)
    return found


def _settle_imports(found: Inheritance) -> None:
    """Wait (bounded) for user threads to finish the imports they are in: a module lock held by
    a thread that does not exist in the child makes the child's next import of it hang."""
    deadline = time.monotonic() + IMPORT_SETTLE_S
    while (busy := half_imported()) and time.monotonic() < deadline:
        time.sleep(0.01)
    for name in busy:
        found.findings.append(Finding(
            "module", f"module '{name}' still being imported by another thread",
            f"waited {IMPORT_SETTLE_S:.0f} s for it",
            "import it before starting the thread, or start the thread in a @post_fork hook"))


def half_imported() -> list[str]:
    return [name for name, module in list(sys.modules.items())
            if getattr(getattr(module, "__spec__", None), "_initializing", False)]


def _scan_objects(found: Inheritance) -> set[int]:
    """One pass over the collector's objects: flush buffered files (a buffer copied into every
    worker would be written once per worker), note numpy generators seeded from the OS, and the
    fds that pooled clients own (urllib3 under requests and boto3; redis-py):
    those reconnect by themselves once their socket is shut down."""
    kinds: dict[type, Callable[[Any], None]] = {}
    kept_alive: set[int] = set()
    numpy_random = sys.modules.get("numpy.random")
    numpy_types: tuple[type, ...] = ()
    if numpy_random is not None:
        numpy_types = (numpy_random.Generator, numpy_random.RandomState)

    def flush(obj: Any) -> None:
        with contextlib.suppress(Exception):
            if not obj.closed:
                obj.flush()

    def connection(obj: Any) -> None:
        sock = getattr(obj, "sock", None) or getattr(obj, "_sock", None)
        with contextlib.suppress(Exception):
            if sock is not None and sock.fileno() >= 0:
                kept_alive.add(sock.fileno())

    def generator(obj: Any) -> None:
        if _entropy_seeded_numpy(obj):
            found.generators.append(obj)

    # Only what the import loaded can have made objects: forkric imports none of these itself.
    http_connection = _loaded_types(RECONNECTING)

    def kind_of(kind: type) -> Callable[[Any], None] | None:
        if issubclass(kind, _BUFFERED):
            return flush
        if http_connection and issubclass(kind, http_connection):
            return connection
        if numpy_types and issubclass(kind, numpy_types):
            return generator
        return None

    # The types first (at C speed), then only the objects of the few types that matter: a
    # heavy import leaves over a million objects, and this runs before every first fork.
    objects = gc.get_objects()
    for kind in set(map(type, objects)):
        action = kind_of(kind)
        if action is not None:
            kinds[kind] = action
    for obj in itertools.compress(objects, map(kinds.__contains__, map(type, objects))):
        kinds[type(obj)](obj)
    del objects
    _give_back_heap()
    for stream in (sys.stdout, sys.stderr):
        flush(stream)
    if numpy_random is not None:
        global_state = getattr(numpy_random, "mtrand", None)
        state = getattr(global_state, "_rand", None)
        if state is not None and _entropy_seeded_numpy(state) and state not in found.generators:
            found.generators.append(state)
    return kept_alive


def _loaded_types(names: tuple[tuple[str, str], ...]) -> tuple[type, ...]:
    """The classes among `names` ((module, class)) whose module is already imported."""
    found = []
    for module_name, class_name in names:
        kind = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(kind, type):
            found.append(kind)
    return tuple(found)


def _give_back_heap() -> None:
    """The scan's list (8 bytes an object: 10 MB for the benchmark handler) is freed into the
    heap, where glibc keeps it resident; every worker would then share 10 MB of nothing. Measured:
    the supervisor's USS +10 MB after the scan, +0 after malloc_trim."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _entropy_seeded_numpy(generator: Any) -> bool:
    """Seeded from the OS, not by the user: numpy keeps the SeedSequence, whose entropy is then
    a 128-bit number (a user's seed is the user's number; np.random.seed(n) keeps none)."""
    bit_generator = getattr(generator, "bit_generator", None) or getattr(
        generator, "_bit_generator", None)
    seed_seq = getattr(bit_generator, "seed_seq", None) or getattr(
        bit_generator, "_seed_seq", None)
    entropy = getattr(seed_seq, "entropy", None)
    return isinstance(entropy, int) and entropy >= 2**64


def thread_target(thread: threading.Thread) -> Any:
    return getattr(thread, "_target", None)


def describe_target(target: Any) -> str:
    if target is None:
        return "run() of a Thread subclass"
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def _classify_threads(found: Inheritance) -> None:
    """Thread pools and log listeners are repaired in each worker; threads of fork-aware
    libraries restart themselves; any other thread does not exist in a worker."""
    main = threading.main_thread()
    log_handlers = sys.modules.get("logging.handlers")
    listener_type: tuple[type, ...] = (log_handlers.QueueListener,) if log_handlers else ()
    for thread in threading.enumerate():
        if thread is main or isinstance(thread, threading._DummyThread):
            continue
        target = thread_target(thread)
        owner = getattr(target, "__self__", None)
        args = getattr(thread, "_args", ())
        name = describe_target(target)
        if listener_type and isinstance(owner, listener_type):
            if owner not in found.listeners:
                found.listeners.append(cast("QueueListener", owner))
        elif name == "concurrent.futures.thread._worker" and args and callable(args[0]):
            executor = args[0]()
            if executor is not None and all(r() is not executor for r in found.executors):
                found.executors.append(weakref.ref(executor))
        elif not name.startswith(FORK_AWARE):
            found.findings.append(Finding(
                "thread", f"thread '{thread.name}' (target {name})",
                "it does not exist in the workers",
                "start it in a @post_fork hook, or set FORKRIC_IMPORT_MODE=per-worker"))


def _shut_down_connections(found: Inheritance, kept_alive: set[int]) -> None:
    """Shut down (never close, never write to) every TCP connection the import left open.

    shutdown(2) ends the connection for every process that shares it with a FIN and nothing
    else: no TLS close_notify, no database Terminate message. Each worker's client then finds it
    closed, as after a server-side close: an HTTP pool reconnects; a database connection raises,
    which is named at start-up instead of answering with another invocation's rows.
    """
    for fd, peer, family in connected_sockets():
        if fd in _open_before and _open_before[fd] == _fd_target(fd):
            continue  # open before the import: not the import's
        what = f"{'TCP' if family != socket.AF_UNIX else 'Unix'} connection to {peer} (fd {fd})"
        if family == socket.AF_UNIX:
            found.findings.append(Finding(
                "socket", what, "left as it is: every worker shares it",
                "open it in a @post_fork hook, or set FORKRIC_IMPORT_MODE=per-worker"))
            continue
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        found.shut_down.append(what)
        if fd not in kept_alive:
            found.findings.append(Finding(
                "socket", what, "shut down before the fork, so no answer crosses between "
                "workers; a client that does not reconnect by itself fails instead",
                "open it in a @post_fork hook (replace it, never close it), or set "
                "FORKRIC_IMPORT_MODE=per-worker"))


def _find_shared_files(found: Inheritance) -> None:
    """Named regular files the import opened for writing, not for appending: one open file, one
    offset for every worker, where each process would have opened its own (a NamedTemporaryFile
    used as scratch space; a sqlite3 database, whose locks a fork does not carry). A log opened
    for appending and a file opened for reading are left shared."""
    for fd, target in sorted(open_fds().items()):
        if (fd <= 2 or not target.startswith("/") or target.endswith(" (deleted)")
                or _open_before.get(fd) == target):
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            continue
        if regular and flags & os.O_ACCMODE != os.O_RDONLY and not flags & os.O_APPEND:
            found.findings.append(Finding(
                "file", f"file {target} (fd {fd}) opened for writing",
                "every worker reads and writes it at one shared offset",
                "open it in a @post_fork hook, or set FORKRIC_IMPORT_MODE=per-worker"))


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def open_fds() -> dict[int, str]:
    """fd -> what it names ("socket:[123]", a path), from /proc (Linux); empty elsewhere."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return {}
    return {fd: target for fd in fds if (target := _fd_target(fd))}


def connected_sockets() -> list[tuple[int, str, int]]:
    """(fd, peer, family) of the connected stream sockets on fds above 2 (Linux: /proc)."""
    result: list[tuple[int, str, int]] = []
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return result
    for fd in sorted(fds):
        if fd <= 2:
            continue
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.type != socket.SOCK_STREAM:
                    continue
                peer = sock.getpeername()
                family = sock.family
        except OSError:  # not connected, or closed meanwhile
            continue
        text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or "(unnamed)")
        result.append((fd, str(text), int(family)))
    return result


def anonymous_files() -> list[int]:
    """fds above 2 of regular files that the import opened and that have no name any more
    (tempfile.TemporaryFile): each worker gets its own copy, as each process would have made
    its own. Files the process had before the import (an unlinked log file a harness gave it)
    stay shared, as they would be under awslambdaric."""
    result: list[int] = []
    for fd, target in sorted(open_fds().items()):
        if fd <= 2 or not target.endswith(" (deleted)") or _open_before.get(fd) == target:
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                result.append(fd)
    return result


def _find_openmp(found: Inheritance) -> None:
    found.give_back_openmp = OMP_ENV not in os.environ
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps
                     if OPENMP_LIBRARY.search(line)}
    except OSError:
        return
    found.openmp = sorted(paths)


def _decide_mode(import_mode: str, found: Inheritance) -> str:
    if import_mode != AUTO:
        return import_mode
    return PER_WORKER if found.findings else ONCE
