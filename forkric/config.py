"""Every knob of forkric in one table: its flag, its environment variable, its default.

The command line wins over the environment, the environment over the default. `Config` is built
once, in `load`, and passed down; nothing else reads these variables.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} is not a positive whole number")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


IMPORT_MODES = ("once", "per-worker", "auto")


def _import_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in IMPORT_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(IMPORT_MODES)}")
    return value


RUNTIME = frozenset({"run", "local", "soak"})
SERVICE = frozenset({"local", "soak"})
SOAK = frozenset({"soak"})


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text!r} is not positive")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{text!r} is not a port number")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    commands: frozenset[str] = RUNTIME


SETTINGS: tuple[Setting, ...] = (
    Setting("workers", "--workers", ("FORKRIC_WORKERS", "AWS_LAMBDA_MAX_CONCURRENCY"),
            _positive_int, "worker processes (default: AWS_LAMBDA_MAX_CONCURRENCY, else 1; "
            "local and soak: the CPU count)"),
    Setting("max_worker_memory_mb", "--max-worker-memory", ("FORKRIC_MAX_WORKER_MEMORY_MB",),
            _non_negative_float, "recycle a worker whose private memory (USS) passes this, MB"),
    Setting("max_requests", "--max-requests", ("FORKRIC_MAX_REQUESTS",),
            _non_negative_int, "recycle a worker after this many invocations (0: never)"),
    Setting("max_requests_jitter", "--max-requests-jitter", ("FORKRIC_MAX_REQUESTS_JITTER",),
            _non_negative_int, "add up to this many invocations to --max-requests, per worker"),
    Setting("timeout_s", "--timeout", ("AWS_LAMBDA_FUNCTION_TIMEOUT",), _positive_float,
            "the function timeout, seconds (local and soak: default 3, as on Lambda); a "
            "deadline further away than this is not believed"),
    Setting("stuck_grace_s", "--stuck-grace", ("FORKRIC_STUCK_GRACE_S",),
            _non_negative_float, "kill a worker busy this long past its deadline, seconds"),
    Setting("shutdown_grace_s", "--shutdown-grace", ("FORKRIC_SHUTDOWN_GRACE_S",),
            _non_negative_float, "on SIGTERM, how long busy workers may finish, seconds"),
    Setting("trace_leaks", "--trace-leaks", ("FORKRIC_TRACE_LEAKS",),
            _flag, "log the allocation sites that grew most when a worker is recycled for memory"),
    Setting("status_file", "--status-file", ("FORKRIC_STATUS_FILE",),
            str, "back the worker scoreboard with this file so other tools can read it"),
    Setting("import_mode", "--import-mode", ("FORKRIC_IMPORT_MODE",), _import_mode,
            "once: import the handler in the supervisor and fork (memory shared); per-worker: "
            "each worker imports it itself (uWSGI's lazy-apps); auto (default): once, unless the "
            "start-up report finds what forkric cannot repair (threads, connections)"),
    Setting("post_fork", "--post-fork", ("FORKRIC_POST_FORK",), str,
            "module:function to run in each worker before its first poll, as @post_fork does "
            "(replace inherited objects there, never close them)"),
    Setting("host", "--host", ("FORKRIC_HOST",), str,
            "address the Invoke API listens on (default: 127.0.0.1, loopback only)", SERVICE),
    Setting("port", "--port", ("FORKRIC_PORT",), _port,
            "Invoke API port (default 9000)", SERVICE),
    Setting("max_queue", "--max-queue", ("FORKRIC_MAX_QUEUE",), _non_negative_int,
            "invocations waiting for a worker before 429 TooManyRequestsException "
            "(default 100)", SERVICE),
    Setting("snap_start", "--snap-start", ("FORKRIC_SNAP_START",), _flag,
            "SnapStart: run the before-snapshot hooks, a snapshot, then the after-restore "
            "hooks, as Lambda does when it publishes a version", frozenset({"local"})),
    Setting("duration_s", "--duration", ("FORKRIC_SOAK_DURATION",), _positive_float,
            "seconds of load (default 30)", SOAK),
    Setting("users", "--users", ("FORKRIC_SOAK_USERS",), _positive_int,
            "concurrent Locust users (default 8)", SOAK),
    Setting("event", "--event", ("FORKRIC_SOAK_EVENT",), str,
            "the event: JSON, or @file (default {})", SOAK),
    Setting("out", "--out", ("FORKRIC_SOAK_OUT",), str,
            "folder for report.json, memory.csv and memory.png (default soak-out)", SOAK),
)


@dataclass(frozen=True)
class Config:
    handler: str = ""
    runtime_api: str = ""
    workers: int = 1
    max_worker_memory_mb: float = 0.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    stuck_grace_s: float = 1.0
    shutdown_grace_s: float = 10.0
    trace_leaks: bool = False
    status_file: str = ""
    import_mode: str = "auto"
    post_fork: str = ""
    timeout_s: float = 0.0  # 0: unknown, the deadlines Lambda sends are believed
    host: str = "127.0.0.1"
    port: int = 9000
    max_queue: int = 100
    snap_start: bool = False
    duration_s: float = 30.0
    users: int = 8
    event: str = "{}"
    out: str = "soak-out"
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def add_arguments(parser: argparse.ArgumentParser, command: str = "run") -> None:
    """Declare the flags of a command's settings on a parser; values stay None unless given."""
    for setting in SETTINGS:
        if command not in setting.commands:
            continue
        if setting.parse is _flag:
            parser.add_argument(setting.flag, dest=setting.name, action="store_const",
                                const="1", default=None, help=setting.help)
        else:
            parser.add_argument(setting.flag, dest=setting.name, default=None,
                                metavar=setting.name.split("_")[-1].upper(), help=setting.help)


def _value(setting: Setting, given: str | None, environ: Mapping[str, str]) -> Any:
    if given is not None:
        source, text = setting.flag, given
    else:
        found = next(((name, environ[name]) for name in setting.env if environ.get(name)), None)
        if found is None:
            return None
        source, text = found
    try:
        return setting.parse(str(text))
    except ValueError as exc:
        raise SystemExit(f"forkric: bad value for {source}: {exc}") from None


def command_defaults(command: str) -> dict[str, Any]:
    """Where a command's defaults differ: the local service is a laptop's Lambda."""
    if command in SERVICE:
        return {"workers": os.cpu_count() or 1, "timeout_s": 3.0}
    return {}


def load(
    handler: str | None,
    given: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    command: str = "run",
) -> Config:
    """Build the Config from flags (`given`, by setting name), the environment, and defaults."""
    env = os.environ if environ is None else environ
    given = given or {}
    values: dict[str, Any] = command_defaults(command)
    for setting in SETTINGS:
        value = _value(setting, given.get(setting.name), env)
        if value is not None:
            values[setting.name] = value
    known = {f.name for f in fields(Config)}
    return Config(
        handler=handler or env.get("_HANDLER", ""),
        runtime_api=env.get("AWS_LAMBDA_RUNTIME_API", ""),
        environ=env,
        **{k: v for k, v in values.items() if k in known},
    )
