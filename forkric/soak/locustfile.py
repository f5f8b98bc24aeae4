"""Locust users for any Lambda Invoke API: `forkric local`, the AWS RIE, or a real endpoint.

Self-contained (Locust and the standard library only), so that Locust can load it by path, on a
master or on a worker machine; `loadtest/locustfile.py` re-exports it.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:9000 --headless -u 8 -r 8 -t 30s \
        --event '{"n": 1}'                      # or --event @event.json, or LOCUST_EVENT=...

Options (each also an environment variable): `--event` (`LOCUST_EVENT`, inline JSON or @file),
`--function-name` (`LOCUST_FUNCTION_NAME`, default `function`), `--think-time` seconds between
the calls of one user (`LOCUST_THINK_TIME`, default 0), `--invoke-timeout` seconds
(`LOCUST_INVOKE_TIMEOUT`, default 60).

What counts as what:
- 200 without `X-Amz-Function-Error`: success, under the name `invoke`.
- `X-Amz-Function-Error` (the handler raised, timed out, or its process died), or a 5xx whose
  body names a `Runtime.*` / `Sandbox.*` error (the RIE answers a dead runtime with 502): a
  failure under its own name, `function error: <errorType>`, apart from the service's health.
- anything else (429, 413, other statuses, refused or reset connections, client timeouts): a
  failure under `invoke`, its message naming the status or the transport error.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser

INVOKE_NAME = "invoke"
FUNCTION_ERROR_PREFIX = "function error: "
FUNCTION_ERROR_HEADER = "X-Amz-Function-Error"
RUNTIME_ERROR_PREFIXES = ("Runtime.", "Sandbox.")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def add_arguments(parser: LocustArgumentParser) -> None:
    # On the parser itself, not a group: only its own add_argument puts an option in the web UI.
    parser.add_argument("--event", default="{}", env_var="LOCUST_EVENT",
                        help="the event: inline JSON, or @path to a JSON file")
    parser.add_argument("--function-name", default="function", env_var="LOCUST_FUNCTION_NAME",
                        help="the function name in the Invoke API path")
    parser.add_argument("--think-time", type=float, default=0.0, env_var="LOCUST_THINK_TIME",
                        help="seconds each user waits between two calls")
    parser.add_argument("--invoke-timeout", type=float, default=60.0,
                        env_var="LOCUST_INVOKE_TIMEOUT",
                        help="seconds before a call counts as a transport failure")


@functools.lru_cache(maxsize=8)
def event_bytes(spec: str) -> bytes:
    """The event to send: `spec` is inline JSON or `@path`; checked to be JSON once."""
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec
    json.loads(text)  # a typo fails the whole run at once, not every call
    return text.encode()


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
    if marker:
        return FUNCTION_ERROR_PREFIX + error_type(body), f"{FUNCTION_ERROR_HEADER}: {marker}"
    kind = error_type(body, default="")
    if status >= 500 and kind.startswith(RUNTIME_ERROR_PREFIXES):
        return FUNCTION_ERROR_PREFIX + kind, f"HTTP {status}"
    return INVOKE_NAME, f"HTTP {status}" + (f": {kind}" if kind else "")


class InvokeUser(FastHttpUser):
    """One caller of `POST /2015-03-31/functions/<name>/invocations`, back to back."""

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        self.event = event_bytes(getattr(options, "event", None) or "{}")
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
        # Locust's annotation says str or dict; bytes go out as they are, not re-encoded.
        with self.client.post(self.path, data=self.event,  # type: ignore[arg-type]
                              name=INVOKE_NAME, catch_response=True,
                              headers={"Content-Type": "application/json"}) as response:
            if not response.status_code:  # refused, reset, timed out: Locust's own error
                return
            name, failure = classify(response.status_code, response.headers, response.content)
            response.request_meta["name"] = name
            if failure is None:
                response.success()
            else:
                response.failure(failure)
