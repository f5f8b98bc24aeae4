"""Every knob of forkric in one table: its flag, its environment variable, its default.

The command line wins over the environment, the environment over the default. `Config` is built
once, in `load`, and passed down; nothing else reads these variables.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class UsageError(ValueError):
    """A setting given a value it cannot take; its text names the flag or variable."""


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):  # nan or inf: no limit, timeout or wait can be either
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise ValueError(f"{text!r} is not 1 or more")
    return int(value)


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return int(value)


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return float(value)


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise ValueError(f"{text!r} is not more than 0")
    return float(value)


SAFETY_LIMIT_MIN_MB = 64.0  # a worker's first invocations alone take a few MB of private memory


def _safety_limit(text: str) -> float:
    value = _number(text, float)
    if value < SAFETY_LIMIT_MIN_MB:
        raise ValueError(f"{text!r} is under {SAFETY_LIMIT_MIN_MB:g} (MB: a limit that low "
                         f"recycles workers on their first invocations; --max-worker-memory "
                         f"sets any limit)")
    return float(value)


def _port(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value <= 65535:
        raise ValueError(f"{text!r} is not a port number (0 to 65535)")
    return int(value)


FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}


def _flag(text: str) -> bool:
    """An on/off variable's value; any other word is an error (a typo was silently off)."""
    try:
        return FLAG_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not one of 1, true, yes, on (or 0, false, no, off)") \
            from None


IMPORT_MODES = ("once", "per-worker", "auto")


def _import_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in IMPORT_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(IMPORT_MODES)}")
    return value


_import_mode.choices = IMPORT_MODES  # type: ignore[attr-defined]


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def _function_name(text: str) -> str:
    if not FUNCTION_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a Lambda function name (letters, digits, '-', '_', "
                         "'.', or an ARN, optionally with :qualifier)")
    return text


# Lambda's pattern for the Invoke API's FunctionName (name, name:qualifier, or an ARN); here for
# the clients and the service alike. ASCII: Python's \d also matches other scripts' digits, which
# Lambda's patterns do not.
FUNCTION_NAME = re.compile(r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?"
                           r"(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?",
                           re.ASCII)

# Set by `forkric local` for its runtime (not a setting: the service's own arrangement).
LOCAL_ENV = "_FORKRIC_LOCAL"

RUNTIME = frozenset({"run", "local", "soak"})
SERVICE = frozenset({"local", "soak"})
SOAK = frozenset({"soak"})
LOAD = frozenset({"load"})
CLIENT = frozenset({"invoke", "load"})


@dataclass(frozen=True)
class Setting:
    """One knob: its `Config` field, its flag, its environment variables (the first wins; the
    first is also the one `forkric local` hands its runtime), the parser of its text (raises
    ValueError on a bad value), its help, and the commands that take it."""

    name: str
    flag: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    commands: frozenset[str] = RUNTIME
    # How the help words the default ("" for none); by command where the commands differ.
    default: str | Mapping[str, str] = ""
    repeatable: frozenset[str] = frozenset()  # commands where the flag may be given again


SETTINGS: tuple[Setting, ...] = (
    Setting("workers", "--workers", ("FORKRIC_WORKERS", "AWS_LAMBDA_MAX_CONCURRENCY"),
            _positive_int, "worker processes",
            default={"run": "AWS_LAMBDA_MAX_CONCURRENCY, else 1", "local": "the CPU count",
                     "soak": "the CPU count"}),
    Setting("max_worker_memory_mb", "--max-worker-memory", ("FORKRIC_MAX_WORKER_MEMORY_MB",),
            _non_negative_float, "recycle a worker whose private memory (USS) passes this many "
            "MB (0: off)", default="0"),
    Setting("max_requests", "--max-requests", ("FORKRIC_MAX_REQUESTS",),
            _non_negative_int, "recycle a worker after this many invocations (0: off)",
            default="0"),
    Setting("max_requests_jitter", "--max-requests-jitter", ("FORKRIC_MAX_REQUESTS_JITTER",),
            _non_negative_int, "add up to this many invocations to --max-requests, drawn per "
            "worker", default="0"),
    Setting("timeout_s", "--timeout", ("AWS_LAMBDA_FUNCTION_TIMEOUT",), _positive_float,
            "the function timeout, seconds; a deadline further away than this is not believed",
            default={"run": "the deadlines Lambda sends", "local": "3, as on Lambda",
                     "soak": "3, as on Lambda"}),
    Setting("stuck_grace_s", "--stuck-grace", ("FORKRIC_STUCK_GRACE_S",),
            _non_negative_float, "kill a worker busy this many seconds past its deadline "
            "(0: at the deadline)", default="1"),
    Setting("start_timeout_s", "--start-timeout", ("FORKRIC_START_TIMEOUT_S",),
            _positive_float, "kill and replace (under the backoff) a worker that has not "
            "reached its first poll this many seconds after its fork", default="60"),
    Setting("shutdown_grace_s", "--shutdown-grace", ("FORKRIC_SHUTDOWN_GRACE_S",),
            _non_negative_float, "on SIGTERM, seconds busy workers may take to finish (0: none)",
            default="10"),
    Setting("trace_leaks", "--trace-leaks", ("FORKRIC_TRACE_LEAKS",),
            _flag, "log the allocation sites that grew most when a worker is recycled for memory",
            default="off"),
    Setting("status_file", "--status-file", ("FORKRIC_STATUS_FILE",),
            str, "back the worker scoreboard with this file so other tools can read it (forkric "
            "local keeps its own: read its GET /status)", frozenset({"run"}),
            default="anonymous memory"),
    Setting("import_mode", "--import-mode", ("FORKRIC_IMPORT_MODE",), _import_mode,
            "once: import the handler in the supervisor and fork (memory shared); per-worker: "
            "each worker imports it itself (uWSGI's lazy-apps); auto: once, unless the "
            "start-up report finds what forkric cannot repair (threads, connections)",
            default="auto"),
    Setting("post_fork", "--post-fork", ("FORKRIC_POST_FORK",), str,
            "module:function to run in each worker before its first poll, as @post_fork does "
            "(replace inherited objects there, never close them)", default="none"),
    Setting("reload", "--reload", ("FORKRIC_RELOAD",), _flag,
            "watch the task root's Python files (not its virtual environments, caches or .git); on "
            "a change, import the handler again and "
            "replace the workers one at a time (as SIGHUP to forkric local does)",
            frozenset({"local"}), default="off"),
    Setting("response_streaming", "--response-streaming", ("FORKRIC_RESPONSE_STREAMING",),
            _flag, "stream the response of every handler that returns a generator, async "
            "generator or iterator, as @response_stream marks one handler", default="off"),
    Setting("host", "--host", ("FORKRIC_HOST",), str,
            "address of the Invoke API: where the service listens, or where clients call",
            SERVICE | CLIENT, default={"local": "127.0.0.1, loopback only",
                                       "soak": "127.0.0.1, loopback only",
                                       "invoke": "127.0.0.1", "load": "127.0.0.1"}),
    Setting("port", "--port", ("FORKRIC_PORT",), _port,
            "port of the Invoke API", SERVICE | CLIENT,
            default={"local": "9000; 0: any free port", "soak": "any free port",
                     "invoke": "9000", "load": "9000"}),
    Setting("max_queue", "--max-queue", ("FORKRIC_MAX_QUEUE",), _non_negative_int,
            "invocations waiting for a worker before 429 TooManyRequestsException (0: none "
            "wait)", SERVICE, default="100"),
    Setting("snap_start", "--snap-start", ("FORKRIC_SNAP_START",), _flag,
            "SnapStart: run the before-snapshot hooks, a snapshot, then the after-restore "
            "hooks, as Lambda does when it publishes a version", frozenset({"local"}),
            default="off"),
    Setting("function_url", "--function-url", ("FORKRIC_FUNCTION_URL",), _flag,
            "serve the function's URL too: any other path of the Invoke API's port is the "
            "function URL (payload format 2.0; a stream is sent as it comes)",
            frozenset({"local"}), default="off"),
    Setting("duration_s", "--duration", ("FORKRIC_SOAK_DURATION",), _positive_float,
            "seconds of load", SOAK | LOAD,
            default={"soak": "30", "load": "30; with the web UI: until stopped"}),
    Setting("users", "--users", ("FORKRIC_SOAK_USERS",), _positive_int,
            "concurrent Locust users", SOAK | LOAD, default="8"),
    Setting("event", "--event", ("FORKRIC_SOAK_EVENT",), str,
            "the event: JSON, or @file; load also takes @- for standard input, and mixes several "
            "at random, by weight: --event @a.json:3 --event @b.json:1 (or @a.json:3,@b.json:1)",
            SOAK | LOAD, default="{}",
            repeatable=LOAD),
    Setting("out", "--out", ("FORKRIC_SOAK_OUT",), str,
            "folder for report.json, memory.csv and memory.png", SOAK, default="soak-out"),
    Setting("safety_limit_mb", "--safety-limit", ("FORKRIC_SOAK_SAFETY_LIMIT_MB",),
            _safety_limit, "without --max-worker-memory, recycle workers whose private memory "
            "(USS) passes this many MB, so that a leak cannot take the machine's memory (less "
            f"when half the available memory shared among the workers is less; at least "
            f"{SAFETY_LIMIT_MIN_MB:g})", SOAK, default="1024"),
    Setting("function_name", "--function", ("FORKRIC_FUNCTION",), _function_name,
            "the function name in the Invoke API path (a name, name:qualifier, or an ARN)",
            CLIENT, default="function"),
    Setting("payload", "--payload", ("FORKRIC_PAYLOAD",), str,
            "the event: JSON, @file, or @- for standard input", frozenset({"invoke"}),
            default="{}"),
    Setting("log_type", "--log-type", ("FORKRIC_LOG_TYPE",), _one_of("None", "Tail"),
            "Tail: print the invocation's last 4 KB of log", frozenset({"invoke"}),
            default="None"),
    Setting("invocation_type", "--invocation-type", ("FORKRIC_INVOCATION_TYPE",),
            _one_of("RequestResponse", "Event", "DryRun"),
            "RequestResponse waits for the result, Event queues it (202), DryRun checks (204)",
            frozenset({"invoke"}), default="RequestResponse"),
    Setting("wait_ready_s", "--wait-ready", ("FORKRIC_WAIT_READY_S",), _non_negative_float,
            "first wait up to this many seconds for forkric local's workers to be ready "
            "(GET /status), the handler's import included",
            CLIENT | SOAK, default={"invoke": "0: do not wait", "load": "120; 0: do not wait",
                                    "soak": "120; 0: no limit"}),
    Setting("headless", "--headless", ("FORKRIC_LOAD_HEADLESS",), _flag,
            "run without Locust's web UI, for --duration, then print the statistics", LOAD,
            default="off: the web UI on http://127.0.0.1:8089"),
)


@dataclass(frozen=True)
class Config:
    """Every setting of one command, built once by `load` and passed down; immutable. Units are
    in the names: `_s` seconds, `_mb` megabytes (MiB); 0 turns a limit off where the help says
    so. `environ` is the environment it was read from (what Lambda's variables say)."""

    handler: str = ""
    runtime_api: str = ""
    workers: int = 1
    max_worker_memory_mb: float = 0.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    stuck_grace_s: float = 1.0
    start_timeout_s: float = 60.0
    shutdown_grace_s: float = 10.0
    trace_leaks: bool = False
    status_file: str = ""
    import_mode: str = "auto"
    post_fork: str = ""
    response_streaming: bool = False
    timeout_s: float = 0.0  # 0: unknown, the deadlines Lambda sends are believed
    host: str = "127.0.0.1"
    port: int = 9000
    max_queue: int = 100
    snap_start: bool = False
    function_url: bool = False
    duration_s: float = 30.0
    users: int = 8
    event: str = "{}"
    out: str = "soak-out"
    safety_limit_mb: float = 1024.0
    reload: bool = False
    function_name: str = "function"
    payload: str = "{}"
    log_type: str = "None"
    invocation_type: str = "RequestResponse"
    wait_ready_s: float = 0.0
    headless: bool = False
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Where each setting given came from: its flag, or the environment variable that set it.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def named(self, name: str) -> str:
        """What the user set for setting `name`: its flag or its environment variable, as
        given (`--payload`, `FORKRIC_PAYLOAD`), so that an error names what is to be fixed."""
        return self.sources.get(name) or next(s.flag for s in SETTINGS if s.name == name)


# What a flag's value is, where its setting's name does not say it (the rest: its last word).
METAVARS = {"workers": "N", "max_requests": "N", "max_requests_jitter": "N", "max_queue": "N",
            "users": "N", "function_name": "NAME", "post_fork": "MODULE:FUNCTION",
            "event": "JSON|@FILE", "payload": "JSON|@FILE|@-", "out": "DIR", "status_file": "PATH",
            "safety_limit_mb": "MB"}


def help_text(setting: Setting, command: str = "run") -> str:
    """A flag's help in `command`: what it does, its default there, its environment variable(s)."""
    env = ", then ".join(f"${name}" for name in setting.env)
    text = setting.default if isinstance(setting.default, str) else \
        setting.default.get(command, "")
    default = f"default: {text}; " if text else ""
    return f"{setting.help} ({default}env {env})".replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser, command: str = "run") -> None:
    """Declare the flags of a command's settings on a parser; values stay None unless given."""
    for setting in SETTINGS:
        if command not in setting.commands:
            continue
        if setting.parse is _flag:
            parser.add_argument(setting.flag, dest=setting.name, action="store_const",
                                const="1", default=None, help=help_text(setting, command))
            continue
        choices = getattr(setting.parse, "choices", None)
        metavar = "{" + ",".join(choices) + "}" if choices else METAVARS.get(
            setting.name, setting.name.split("_")[-1].upper())
        parser.add_argument(setting.flag, dest=setting.name, default=None, metavar=metavar,
                            action="append" if command in setting.repeatable else "store",
                            help=help_text(setting, command))


def _value(setting: Setting, given: str | list[str] | None,
           environ: Mapping[str, str]) -> tuple[str, Any] | None:
    """(where the value came from: the flag or the variable, the parsed value), or None."""
    if isinstance(given, list):  # a flag given more than once: its values, comma-joined
        given = ",".join(given)
    if given is not None:
        source, text = setting.flag, given
    else:
        found = next(((name, environ[name]) for name in setting.env if environ.get(name)), None)
        if found is None:
            return None
        source, text = found
    try:
        return source, setting.parse(str(text))
    except ValueError as exc:
        raise UsageError(f"bad value for {source}: {exc}") from None


def command_defaults(command: str) -> dict[str, Any]:
    """Where a command's defaults differ: the local service is a laptop's Lambda."""
    if command in SERVICE:
        found: dict[str, Any] = {"workers": os.cpu_count() or 1, "timeout_s": 3.0}
        if command == "soak":  # any free port (a soak needs none in particular)
            found.update(port=0, wait_ready_s=120.0)
        return found
    if command == "load":
        return {"wait_ready_s": 120.0}
    return {}


def load(
    handler: str | None,
    given: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    command: str = "run",
) -> Config:
    """Build the Config from flags (`given`, by setting name), the environment, and defaults.

    Raises UsageError (a ValueError) naming the flag or variable whose value is bad."""
    env = os.environ if environ is None else environ
    given = given or {}
    values: dict[str, Any] = command_defaults(command)
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        found = _value(setting, given.get(setting.name), env)
        if found is not None:
            sources[setting.name], values[setting.name] = found
    known = {f.name for f in fields(Config)}
    return Config(
        handler=handler or env.get("_HANDLER", ""),
        runtime_api=env.get("AWS_LAMBDA_RUNTIME_API", ""),
        environ=env,
        sources=sources,
        **{k: v for k, v in values.items() if k in known},
    )
