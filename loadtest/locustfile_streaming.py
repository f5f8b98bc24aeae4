"""A Locust user for streamed invocations (InvokeWithResponseStream, event-stream answers):
time to first byte recorded apart from the whole stream's time.

    python -m forkric local loadtest.handlers.streaming.ticks --workers 4 --port 9000 &
    locust -f loadtest/locustfile_streaming.py --host http://127.0.0.1:9000 --headless \
        -u 8 -r 8 -t 30s --event '{"chunks": 100, "gap_ms": 10}'

Each call gives two rows: `stream: first byte` (request sent to the first PayloadChunk) and
`stream: total` (to InvokeComplete); its response length is the payload's bytes. A function error
(ErrorCode in InvokeComplete) is a failure of `stream: total` named by its code; a service error
(a status other than 200) or a broken stream, a failure of both. The options (`--event` inline
or @file, `--function-name`) and the run-time clock fix are forkric's own Locust users' (imported
as a module, so that Locust does not run their user class too).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from botocore.eventstream import EventStreamBuffer
from locust import User, task

from forkric.soak import locustfile as invoke_users

FIRST_BYTE = "stream: first byte"
TOTAL = "stream: total"


class StreamFailure(Exception):
    def __repr__(self) -> str:
        return str(self)


class StreamingInvokeUser(User):
    """One caller of `POST /2021-11-15/functions/<name>/response-streaming-invocations`, back to
    back, on one kept-alive connection (Locust's gevent makes its socket cooperative)."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.event = invoke_users.event_bytes(getattr(options, "event", None) or "{}")
        name = getattr(options, "function_name", None) or "function"
        self.path = f"/2021-11-15/functions/{name}/response-streaming-invocations"
        url = urlsplit(self.host or "http://127.0.0.1:9000")
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.conn: http.client.HTTPConnection | None = None

    def _record(self, name: str, seconds: float, length: int,
                failure: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="POST", name=name, response_time=seconds * 1000,
            response_length=length, exception=failure, context={})

    @task
    def invoke(self) -> None:
        started = time.perf_counter()
        try:
            first, total, length, error = self._call()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.conn = None
            failure = StreamFailure(f"{type(exc).__name__}: {exc}")
            elapsed = time.perf_counter() - started
            self._record(FIRST_BYTE, elapsed, 0, failure)
            self._record(TOTAL, elapsed, 0, failure)
            return
        self._record(FIRST_BYTE, first, 0)
        self._record(TOTAL, total, length, StreamFailure(error) if error else None)

    def _call(self) -> tuple[float, float, int, str | None]:
        """(seconds to the first payload byte, to the end, payload bytes, ErrorCode or None)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(*self.address, timeout=120)
        started = time.perf_counter()
        self.conn.request("POST", self.path, self.event, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        if response.status != 200:
            body = response.read()
            raise ValueError(f"HTTP {response.status}: {body[:200]!r}")
        decoder = EventStreamBuffer()
        first: float | None = None
        length = 0
        while True:
            data = response.read1(65536)
            if not data:
                raise ValueError("the stream ended without InvokeComplete")
            decoder.add_data(data)
            for message in decoder:
                kind = message.headers.get(":event-type")
                if kind == "PayloadChunk":
                    if first is None:
                        first = time.perf_counter() - started
                    length += len(message.payload)
                elif kind == "InvokeComplete":
                    total = time.perf_counter() - started
                    response.read()  # the chunked body's end: the connection is reused
                    code = json.loads(message.payload or b"{}").get("ErrorCode")
                    return (first if first is not None else total), total, length, code
