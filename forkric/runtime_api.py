"""The Lambda Runtime API client: one kept-alive `http.client` connection per process.

Measured in the design notes: a `requests.Session` loop served about half the invocations per
second of this under the real RIE, so the hot path stays on the standard library.
"""

from __future__ import annotations

import http.client
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from forkric.marshal import to_json

API_VERSION = "/2018-06-01"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
XRAY_CAUSE_LIMIT = 1024 * 1024
USER_AGENT = "forkric/{0} (python/{1[0]}.{1[1]}.{1[2]})"

log = logging.getLogger("forkric")


class RuntimeAPIError(Exception):
    """The Runtime API answered with an unexpected status."""

    def __init__(self, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{path}: HTTP {status}: {body[:200]!r}")
        self.status = status


class RuntimeAPIExit(Exception):
    """The Runtime API asked the runtime to exit (HTTP 500), or cannot be reached for good."""


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Invocation:
    request_id: str
    deadline_ms: int
    body: bytes
    headers: http.client.HTTPMessage

    def header(self, name: str) -> str | None:
        # http.client decodes header bytes as latin-1; Lambda sends UTF-8 (a client context with
        # non-ASCII text), which awslambdaric's native client decodes as such.
        value = self.headers.get(name)
        if value is None or value.isascii():
            return value
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value


class RuntimeAPI:
    """Calls to one Runtime API address, each on the same kept-alive connection."""

    def __init__(self, address: str, next_retries: int = 10, max_backoff_s: float = 2.0) -> None:
        from forkric import __version__

        host, _, port = address.rpartition(":")
        self.host, self.port = host or address, int(port) if host else 80
        self.next_retries = next_retries
        self.max_backoff_s = max_backoff_s
        self.user_agent = USER_AGENT.format(__version__, sys.version_info)
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            # No timeout: /next blocks until an invocation arrives, however long that is.
            self.conn = http.client.HTTPConnection(self.host, self.port)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Reply:
        conn = self._connection()
        all_headers = {"User-Agent": self.user_agent, **(headers or {})}
        try:
            conn.request(method, API_VERSION + path, body, all_headers)
            response = conn.getresponse()
            # Read it all now so that the connection is ready for the next call.
            reply = Reply(response.status, response.headers, response.read())
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if reply.status == 500:
            raise RuntimeAPIExit(f"{path}: the Runtime API answered 500: the runtime must exit")
        return reply

    def next(self) -> Invocation:
        """Wait for the next invocation; a failed call is retried with backoff, then given up."""
        delay = 0.1
        for attempt in range(self.next_retries + 1):
            try:
                reply = self._call("GET", "/runtime/invocation/next")
                if reply.status == 200:
                    return _invocation(reply)
                failure: Exception = RuntimeAPIError("/runtime/invocation/next",
                                                     reply.status, reply.body)
            except (OSError, http.client.HTTPException) as exc:
                failure = exc
            if attempt == self.next_retries:
                break
            if attempt == 0:
                log.warning("forkric: GET /next failed (%s); retrying with backoff", failure)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        raise RuntimeAPIExit(f"the Runtime API could not be reached: {failure}")

    def post_response(self, request_id: str, body: bytes, content_type: str) -> int:
        path = f"/runtime/invocation/{request_id}/response"
        return self._call("POST", path, body, {"Content-Type": content_type}).status

    def post_error(self, request_id: str, error: dict[str, Any],
                   xray_cause: dict[str, Any] | None = None) -> int:
        path = f"/runtime/invocation/{request_id}/error"
        return self._call("POST", path, to_json(error).encode("utf-8"),
                          _error_headers(error, xray_cause)).status

    def post_init_error(self, error: dict[str, Any]) -> int:
        return self._call("POST", "/runtime/init/error", to_json(error).encode("utf-8"),
                          _error_headers(error, None)).status


def _error_headers(error: dict[str, Any], xray_cause: dict[str, Any] | None) -> dict[str, str]:
    headers = {ERROR_TYPE_HEADER: _raw_header(error.get("errorType") or "Unhandled"),
               "Content-Type": "application/json"}
    if xray_cause is not None:
        cause = to_json(xray_cause).encode("utf-8")
        if len(cause) < XRAY_CAUSE_LIMIT:
            headers[XRAY_CAUSE_HEADER] = cause.decode("latin-1")
    return headers


def _raw_header(value: str) -> str:
    # http.client sends header text as latin-1; this makes it send the UTF-8 bytes as they are.
    return value.encode("utf-8").decode("latin-1")


def _invocation(reply: Reply) -> Invocation:
    deadline = reply.headers.get("Lambda-Runtime-Deadline-Ms")
    return Invocation(
        request_id=reply.headers.get("Lambda-Runtime-Aws-Request-Id", ""),
        deadline_ms=int(deadline) if deadline else int(time.time() * 1000) + 3_000,
        body=reply.body,
        headers=reply.headers,
    )
