"""Locust users for any Lambda Invoke API: `forkric local`, the AWS RIE, or a real endpoint.

Self-contained (Locust and the standard library only), so that Locust can load it by path, on a
master or on a worker machine; `loadtest/locustfile.py` re-exports it.

    forkric load --port 9000 --headless --users 8 --duration 30 --event '{"n": 1}'
    locust -f loadtest/locustfile.py --host http://127.0.0.1:9000 --headless -u 8 -r 8 -t 30s \
        --event '{"n": 1}'                      # or --event @event.json, or LOCUST_EVENT=...

Options (each also an environment variable): `--event` (`LOCUST_EVENT`: inline JSON, @file, or
several, comma-separated, each with an optional weight after `:`, mixed at random in that
proportion per call: `@small.json:3,@large.json:1`; a bad one stops the run at once, exit 2),
`--function-name` (`LOCUST_FUNCTION_NAME`, default `function`), `--think-time` seconds between
the calls of one user (`LOCUST_THINK_TIME`, default 0), `--invoke-timeout` seconds
(`LOCUST_INVOKE_TIMEOUT`, default 60).

What counts as what:
- 200 without `X-Amz-Function-Error`: success, under the name `invoke`.
- `X-Amz-Function-Error` (the handler raised, timed out, or its process died), or a 5xx whose
  body names a `Runtime.*` / `Sandbox.*` error (the RIE answers a dead runtime with 502): a
  failure under its own name, `function error: <errorType>`, apart from the service's health;
  its message is `<errorType>: <errorMessage>` (request ids in it masked, so that Locust's error
  table groups alike failures).
- anything else (429, 413, other statuses, refused or reset connections, client timeouts): a
  failure under `invoke`, its message naming the status or the transport error.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.runners import WorkerRunner

INVOKE_NAME = "invoke"
FUNCTION_ERROR_PREFIX = "function error: "
FUNCTION_ERROR_HEADER = "X-Amz-Function-Error"
RUNTIME_ERROR_PREFIXES = ("Runtime.", "Sandbox.")
EXIT_BAD_EVENT = 2
MESSAGE_LIMIT = 200
_FILE_ITEM = re.compile(r"@(?P<path>[^,]+?)(?::(?P<weight>\d+))?(?=,|$)")
_WEIGHT = re.compile(r":(?P<weight>\d+)(?=,|$)")
_ITEM_END = re.compile(r"(?P<weight>)(?=,|$)")
ERROR_TYPE_HEADER = "x-amzn-ErrorType"  # the Lambda service's own errors (429, 413, ...)
_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def add_arguments(parser: LocustArgumentParser) -> None:
    # On the parser itself, not a group: only its own add_argument puts an option in the web UI.
    parser.add_argument("--event", default="{}", env_var="LOCUST_EVENT",
                        help="the event: inline JSON, or @path to a JSON file; several to mix, "
                             "comma-separated, each with an optional :weight "
                             "(@a.json:3,@b.json:1)")
    parser.add_argument("--function-name", default="function", env_var="LOCUST_FUNCTION_NAME",
                        help="the function name in the Invoke API path")
    parser.add_argument("--think-time", type=float, default=0.0, env_var="LOCUST_THINK_TIME",
                        help="seconds each user waits between two calls")
    parser.add_argument("--invoke-timeout", type=float, default=60.0,
                        env_var="LOCUST_INVOKE_TIMEOUT",
                        help="seconds before a call counts as a transport failure")


@functools.lru_cache(maxsize=8)
def parse_events(spec: str) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """The events to send and their weights. `spec`: inline JSON; or items separated by commas,
    each `@path` or inline JSON, with an optional `:weight` (default 1). Every event is checked
    to be JSON once. Raises ValueError with a one-line message naming the bad item."""
    try:
        json.loads(spec)
    except ValueError:
        pass
    else:
        return (spec.encode(),), (1,)
    found: list[bytes] = []
    weights: list[int] = []
    position = 0
    while position < len(spec):
        if spec.startswith("@", position):
            item = _FILE_ITEM.match(spec, position)
            if item is None:
                raise ValueError(f"no file name after '@' at {spec[position:]!r}")
            text = _read(item["path"])
        else:
            text, item = _inline(spec, position)
        weight = int(item["weight"] or 1) if item is not None else 1
        if weight < 1:
            raise ValueError(f"weight 0 for {spec[position:item.end()]!r}: give 1 or more")
        found.append(text.encode())
        weights.append(weight)
        position = item.end() if item is not None else len(spec)
        if position < len(spec):
            position += 1  # the comma
    if not found:
        raise ValueError("no event given")
    return tuple(found), tuple(weights)


def _read(path: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"@{path}: {exc.strerror or exc}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise ValueError(f"@{path} is not JSON: {exc}") from None
    return text


def _inline(spec: str, position: int) -> tuple[str, re.Match[str]]:
    """Inline JSON at `position`, then an optional :weight before the next comma."""
    try:
        _, end = json.JSONDecoder().raw_decode(spec, position)
    except ValueError as exc:
        raise ValueError(f"not JSON (inline, or @file): {spec[position:]!r}: {exc}") from None
    weight = _WEIGHT.match(spec, end)
    rest = _ITEM_END.match(spec, end) if weight is None else weight
    if rest is None:
        raise ValueError(f"unexpected {spec[end:]!r} after the JSON {spec[position:end]!r}")
    return spec[position:end], rest


def event_bytes(spec: str) -> bytes:
    """The event to send when `spec` names one (the first, when it names several)."""
    return parse_events(spec)[0][0]


@events.init.add_listener  # type: ignore[untyped-decorator]
def catch_up_the_clock(**kwargs: Any) -> None:
    """Locust arms `--run-time` with gevent's cached clock, last read when its hub was made:
    everything imported since (seconds on a busy machine) was taken off the run. Read it now."""
    gevent.get_hub().loop.update_now()


@events.init.add_listener  # type: ignore[untyped-decorator]
def check_event(environment: Any, **kwargs: Any) -> None:
    """A bad --event stops the run before any user starts: one line, exit status 2. (A
    distributed worker takes the master's event: the master checks it.)"""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        parse_events(getattr(options, "event", None) or "{}")
    except ValueError as exc:
        print(f"locust: bad --event: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_EVENT)


def _masked(text: str) -> str:
    text = _REQUEST_ID.sub("<request id>", text)
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."


def error_message(body: bytes | None) -> str:
    """The errorMessage of a Lambda error body (the plain text of a classic RIE timeout)."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        found = json.loads(text)
    except ValueError:
        return _masked(text.strip())
    if isinstance(found, dict):
        return _masked(str(found.get("errorMessage") or found.get("message") or ""))
    return ""


def error_type(body: bytes | None, default: str = "Unhandled") -> str:
    """The `errorType` of a Lambda error body; the classic RIE's timeout is plain text."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        found = json.loads(text)
    except ValueError:
        return "Sandbox.Timedout" if text.startswith("Task timed out") else default
    if isinstance(found, dict):
        return str(found.get("errorType") or found.get("Type") or default)
    return default


def classify(status: int, headers: Any, body: bytes | None) -> tuple[str, str | None]:
    """(request name, failure message or None) of one Invoke API answer. A function error is
    named by its errorType; its message says how it was told apart (header or status)."""
    if status == 200 and not headers.get(FUNCTION_ERROR_HEADER):
        return INVOKE_NAME, None
    marker = headers.get(FUNCTION_ERROR_HEADER)
    message = error_message(body)
    if marker:
        kind = error_type(body)
        return FUNCTION_ERROR_PREFIX + kind, f"{kind}: {message}" if message else kind
    kind = error_type(body, default="")
    if status >= 500 and kind.startswith(RUNTIME_ERROR_PREFIXES):
        return FUNCTION_ERROR_PREFIX + kind, f"{kind}: {message} (HTTP {status})"
    kind = headers.get(ERROR_TYPE_HEADER) or kind
    detail = ": ".join(part for part in (kind, message) if part)
    return INVOKE_NAME, f"HTTP {status}" + (f": {detail}" if detail else "")


class Failure(Exception):
    """A failed invocation as Locust's error table shows it: `KeyError: 'k'`, not
    `CatchResponseError("KeyError: 'k'")` (Locust writes an error's repr)."""

    def __repr__(self) -> str:
        return str(self)


class InvokeUser(FastHttpUser):
    """One caller of `POST /2015-03-31/functions/<name>/invocations`, back to back."""

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        self.events, self.weights = parse_events(getattr(options, "event", None) or "{}")
        name = getattr(options, "function_name", None) or "function"
        self.path = f"/2015-03-31/functions/{name}/invocations"
        self.think_time = float(getattr(options, "think_time", 0.0) or 0.0)
        # Read by FastHttpUser.__init__ when it makes the client.
        self.network_timeout = self.connection_timeout = float(
            getattr(options, "invoke_timeout", 60.0) or 60.0)
        super().__init__(environment)

    def wait_time(self) -> float:
        return self.think_time

    @task
    def invoke(self) -> None:
        event = self.events[0] if len(self.events) == 1 else random.choices(
            self.events, self.weights)[0]
        # Locust's annotation says str or dict; bytes go out as they are, not re-encoded.
        with self.client.post(self.path, data=event,  # type: ignore[arg-type]
                              name=INVOKE_NAME, catch_response=True,
                              headers={"Content-Type": "application/json"}) as response:
            if not response.status_code:  # refused, reset, timed out: Locust's own error
                return
            name, failure = classify(response.status_code, response.headers, response.content)
            response.request_meta["name"] = name
            if failure is None:
                response.success()
            else:
                response.failure(Failure(failure))
