"""A tiny Runtime API on the standard library's HTTP server, for what the real RIE cannot do.

The RIE cannot be made to answer 500, sends no trace id, and gives the runtime no telemetry fd;
this fake serves queued invocations with any headers, records what the runtime posts back, and
can answer a chosen status. Everything else goes through the real RIE.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support import rie

PREFIX = "/2018-06-01/runtime"


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeRuntimeAPI:
    port: int = 0
    invocations: queue.Queue[tuple[dict[str, str], bytes]] = field(default_factory=queue.Queue)
    posted: queue.Queue[Posted] = field(default_factory=queue.Queue)
    next_status: int = 200  # anything else: what /next always answers
    next_calls: int = 0
    next_times: list[float] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    # An answer to /next sent in two parts: its head, then (once `release` is set) the rest.
    split_answers: bool = False
    partial_sent: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    # Posts to .../error read and never answered (a Runtime API that hangs).
    hang_error_posts: bool = False
    error_posts_held: int = 0
    restore_status: int = 200  # what GET /restore/next answers (SnapStart)
    restore_calls: list[float] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def queue_invocation(self, event: Any = None, headers: Mapping[str, str] | None = None,
                         request_id: str = "", body: bytes | None = None) -> str:
        request_id = request_id or f"req-{self.invocations.qsize()}-{time.monotonic_ns()}"
        all_headers = {"Lambda-Runtime-Aws-Request-Id": request_id,
                       "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                       "Lambda-Runtime-Invoked-Function-Arn":
                           "arn:aws:lambda:us-east-1:012345678912:function:fake",
                       "Content-Type": "application/json", **(headers or {})}
        payload = body if body is not None else json.dumps(event if event is not None else {})
        self.invocations.put((all_headers, payload.encode() if isinstance(payload, str)
                              else payload))
        return request_id

    def wait_posted(self, timeout: float = 15.0) -> Posted:
        return self.posted.get(timeout=timeout)


def _handler_class(api: FakeRuntimeAPI) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"",
                    headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                # As Lambda does: header values go out as UTF-8 (the server writes latin-1).
                self.send_header(name, value.encode("utf-8").decode("latin-1"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == PREFIX + "/restore/next":
                api.restore_calls.append(time.monotonic())
                self._answer(api.restore_status)
                return
            if self.path != PREFIX + "/invocation/next":
                self._answer(404)
                return
            api.next_calls += 1
            api.next_times.append(time.monotonic())
            if api.next_status != 200:
                self._answer(api.next_status, b'{"errorType":"Fake"}')
                return
            while not api.stopping.is_set():
                try:
                    headers, body = api.invocations.get(timeout=0.1)
                except queue.Empty:
                    continue
                if api.split_answers:
                    self._answer_in_two_parts(body, headers)
                else:
                    self._answer(200, body, headers)
                return
            self._answer(503)

        def _answer_in_two_parts(self, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            api.partial_sent.set()
            api.release.wait(60)
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if api.hang_error_posts and self.path.endswith("/error"):
                api.error_posts_held += 1
                api.stopping.wait(120)
                return
            api.posted.put(Posted(self.path.removeprefix(PREFIX),
                                  {k.lower(): v for k, v in self.headers.items()},
                                  body))
            self._answer(202, b'{"status":"OK"}')

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a runtime stopped mid-connection: nothing for the test to see


@contextlib.contextmanager
def serve(next_status: int = 200) -> Iterator[FakeRuntimeAPI]:
    api = FakeRuntimeAPI(port=rie.free_port(), next_status=next_status)
    server = _Server(("127.0.0.1", api.port), _handler_class(api))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.stopping.set()
        server.shutdown()
        server.server_close()
