"""The Lambda Runtime API client: one kept-alive connection per process (see connection.py)."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from forkric.connection import Connection, Head, Interrupt, Response
from forkric.marshal import to_json
from forkric.protocol import RESPONSE_LIMIT, response_too_large

API_VERSION = "/2018-06-01"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
XRAY_CAUSE_LIMIT = 1024 * 1024
# Managed Instances name each invocation on /next; the answer carries the name back.
INVOCATION_ID_HEADER = "Lambda-Runtime-Invocation-Id"
USER_AGENT = "forkric/{0} (python/{1[0]}.{1[1]}.{1[2]})"

log = logging.getLogger("forkric")
INIT_MESSAGE_CUT = 64 * 1024  # characters of an oversized init error's message that are kept


class RuntimeAPIError(Exception):
    """The Runtime API answered with an unexpected status (`status`)."""

    def __init__(self, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{path}: HTTP {status}: {body[:200]!r}")
        self.status = status


class LambdaRuntimeClientError(Exception):
    """A SnapStart call (`/restore/next`, `/restore/error`) answered with another status than
    expected. Named and worded as awslambdaric 4.2.2's exception of the same name, because its
    class name and text become the error that the runtime reports to Lambda."""

    def __init__(self, path: str, status: int, body: bytes) -> None:
        super().__init__(f"Request to Lambda Runtime '{API_VERSION}{path}' endpoint failed. "
                         f"Reason: '{status}'. Response body: '{body!r}'")
        self.status = status


class RuntimeAPIExit(Exception):
    """The Runtime API asked the runtime to exit (HTTP 500), or cannot be reached for good."""


@dataclass
class Invocation:
    """One invocation as `/next` delivered it: the deadline in epoch milliseconds (now + 3 s when
    the Runtime API sent none), the raw event body, every header by lower-case name."""

    request_id: str
    deadline_ms: int
    body: bytes
    headers: dict[str, str]  # lower-case names

    def header(self, name: str) -> str | None:
        """A header's value by any-case name; None when absent."""
        return self.headers.get(name.lower())


class Holder(Protocol):
    """Who holds an invocation from the moment the head of `/next`'s answer arrives (its body may
    be megabytes still to read): a worker killed from then on died holding it."""

    def hold(self, request_id: str, deadline_ms: int) -> None:
        """The head of an invocation arrived: its id and deadline (epoch ms)."""

    def release(self) -> None:
        """The answer whose head was held failed after all (a reset mid-body): held no more."""


class RuntimeAPI:
    """Calls to one Runtime API address (`host:port`), each on the same kept-alive connection.

    Not thread-safe: one per process (a worker's own, or the supervisor's for reporting).
    `timeout` bounds every call, in seconds; None (a worker's) lets `/next` wait for ever.
    """

    def __init__(self, address: str, next_retries: int = 10, max_backoff_s: float = 2.0,
                 timeout: float | None = None) -> None:
        from forkric import __version__

        host, _, port = address.rpartition(":")
        self.host, self.port = host or address, int(port) if host else 80
        self.next_retries = next_retries
        self.max_backoff_s = max_backoff_s
        self.user_agent = USER_AGENT.format(__version__, sys.version_info)
        self.conn = Connection(self.host, self.port, self.user_agent, timeout)

    def close(self) -> None:
        """Close the connection; the next call opens another."""
        self.conn.close()

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None,
              interrupt: Interrupt | None = None, on_head: Head | None = None) -> Response:
        # Only an invocation's headers are read: the answers to posts carry nothing we use.
        reply = self.conn.request(method, API_VERSION + path, body, headers,
                                  read_headers=method == "GET", interrupt=interrupt,
                                  on_head=on_head)
        if reply.status == 500:
            raise RuntimeAPIExit(f"{path}: the Runtime API answered 500: the runtime must exit")
        return reply

    def next(self, interrupt: Interrupt | None = None,
             holder: Holder | None = None) -> Invocation:
        """Wait for the next invocation, as long as it takes.

        A failed call (refused, reset, an unexpected status) is retried `next_retries` times with
        backoff from 0.1 s doubling to `max_backoff_s`, then RuntimeAPIExit is raised; so it is at
        once when the Runtime API answers 500. `interrupt` may abandon the wait while no byte of
        an answer has arrived (connection.Interrupted); an answer that began is always returned.
        `holder` is told the invocation as soon as its head arrives, and released if that
        answer then fails.
        """
        on_head: Head | None = None
        if holder is not None:
            def on_head(status: int, headers: dict[str, str]) -> None:
                if status == 200:
                    holder.hold(*_identity(headers))
        delay = 0.1
        for attempt in range(self.next_retries + 1):
            try:
                reply = self._call("GET", "/runtime/invocation/next", interrupt=interrupt,
                                   on_head=on_head)
                if reply.status == 200:
                    return _invocation(reply)
                failure: Exception = RuntimeAPIError("/runtime/invocation/next",
                                                     reply.status, reply.body)
            except OSError as exc:
                failure = exc
            if holder is not None:
                holder.release()
            if attempt == self.next_retries:
                break
            if attempt == 0:
                log.warning("forkric: GET /next failed (%s); retrying with backoff", failure)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        raise RuntimeAPIExit(f"the Runtime API could not be reached: {failure}")

    def post_response(self, request_id: str, body: bytes, content_type: str,
                      invocation_id: str | None = None) -> int:
        """Post an invocation's result; the HTTP status (202 accepted, 413 over the payload
        limit, ...). OSError when the Runtime API cannot be reached, RuntimeAPIExit on 500."""
        path = f"/runtime/invocation/{request_id}/response"
        headers = {"Content-Type": content_type}
        if invocation_id:
            headers[INVOCATION_ID_HEADER] = invocation_id
        return self._call("POST", path, body, headers).status

    def post_error(self, request_id: str, error: dict[str, Any],
                   xray_cause: dict[str, Any] | None = None,
                   invocation_id: str | None = None) -> int:
        """Post an invocation's error body (`errorMessage`, `errorType`, `requestId`,
        `stackTrace`), its X-Ray cause as a header when under 1 MiB; the HTTP status, errors as
        `post_response`."""
        path = f"/runtime/invocation/{request_id}/error"
        body = to_json(error).encode("utf-8")
        if len(body) > RESPONSE_LIMIT:
            # Lambda's error for it, at once: the RIE drops the connection on such a post (the
            # worker died, and the invoker waited 13 s for 'exit status 1'); a Runtime API that
            # answers 413 would leave the invoker no error at all.
            log.error("forkric: the error of %s is %d bytes, over the payload limit; its "
                      "invoker gets Function.ResponseSizeTooLarge", request_id, len(body))
            error, xray_cause = response_too_large(len(body)), None
            body = to_json(error).encode("utf-8")
        headers = _error_headers(error, xray_cause)
        if invocation_id:
            headers[INVOCATION_ID_HEADER] = invocation_id
        return self._call("POST", path, body, headers).status

    def post_init_error(self, error: dict[str, Any], error_type: str | None = None) -> int:
        """Report an init error; `error_type` (the header) defaults to the body's errorType. The
        HTTP status (202 expected; 403 in managed-instances mode when another process already
        did); errors as `post_response`."""
        body = to_json(error).encode("utf-8")
        if len(body) > RESPONSE_LIMIT:
            error = cut_init_error(error, len(body))
            body = to_json(error).encode("utf-8")
        headers = _error_headers(error, None)
        if error_type:
            headers[ERROR_TYPE_HEADER] = error_type
        return self._call("POST", "/runtime/init/error", body, headers).status

    def restore_next(self) -> None:
        """SnapStart: the init is complete; returns once the snapshot was restored (200).
        Raises LambdaRuntimeClientError on any other status, OSError when unreachable."""
        path = "/runtime/restore/next"
        # Not _call: a 500 here is an error of the snapshot phase, reported as any other status.
        reply = self.conn.request("GET", API_VERSION + path, None, None, read_headers=False)
        if reply.status != 200:
            raise LambdaRuntimeClientError(path, reply.status, reply.body)

    def post_restore_error(self, error: dict[str, Any], error_type: str) -> None:
        """SnapStart: an after-restore hook failed. Raises LambdaRuntimeClientError unless 202."""
        path = "/runtime/restore/error"
        headers = {ERROR_TYPE_HEADER: error_type, "Content-Type": "application/json"}
        reply = self.conn.request("POST", API_VERSION + path, to_json(error).encode("utf-8"),
                                  headers, read_headers=False)
        if reply.status != 202:
            raise LambdaRuntimeClientError(path, reply.status, reply.body)


def _error_headers(error: dict[str, Any], xray_cause: dict[str, Any] | None) -> dict[str, str]:
    headers = {ERROR_TYPE_HEADER: error.get("errorType") or "Unhandled",
               "Content-Type": "application/json"}
    if xray_cause is not None:
        cause = to_json(xray_cause)
        if len(cause.encode("utf-8")) < XRAY_CAUSE_LIMIT:
            headers[XRAY_CAUSE_HEADER] = cause
    return headers


def cut_init_error(error: dict[str, Any], size: int) -> dict[str, Any]:
    """An init error of `size` bytes, over the payload limit (an import raising a 7 MB message),
    cut to fit: its type kept, its message cut to INIT_MESSAGE_CUT characters with a note, its
    stack trace kept only if it then fits. Sent whole, the RIE dropped the connection (a panic,
    with awslambdaric too) and forkric local answered an empty message."""
    log.error("forkric: the init error is %d bytes, over the payload limit; its message is cut "
              "to %d characters", size, INIT_MESSAGE_CUT)
    message = str(error.get("errorMessage", ""))[:INIT_MESSAGE_CUT]
    cut = dict(error, errorMessage=f"{message}... [cut by forkric: the init error was {size} "
                                   f"bytes, over the {RESPONSE_LIMIT}-byte payload limit]")
    if len(to_json(cut).encode("utf-8")) > RESPONSE_LIMIT:
        cut["stackTrace"] = []
    return cut


def _identity(headers: dict[str, str]) -> tuple[str, int]:
    """An invocation's request id and deadline (epoch ms; now + 3 s when none was sent)."""
    deadline = headers.get("lambda-runtime-deadline-ms")
    return (headers.get("lambda-runtime-aws-request-id", ""),
            int(deadline) if deadline else int(time.time() * 1000) + 3_000)


def _invocation(reply: Response) -> Invocation:
    request_id, deadline_ms = _identity(reply.headers)
    return Invocation(request_id=request_id, deadline_ms=deadline_ms, body=reply.body,
                      headers=reply.headers)
