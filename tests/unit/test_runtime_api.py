"""forkric.runtime_api against a real HTTP server on 127.0.0.1 (the client is under test)."""

from __future__ import annotations

import ast
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from forkric import invocation, runtime_api
from forkric.runtime_api import RuntimeAPI, RuntimeAPIExit

from .conftest import run_python


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, bytes]
    body: bytes
    client_port: int


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""


class Server:
    """A Runtime API stand-in: answers from `script` (path -> replies), records every request."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: dict[str, list[Reply]] = {}
        self.default: Callable[[str], Reply] = lambda path: Reply(202 if "POST" else 200)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v.encode("latin-1") for k, v in self.headers.items()}
                server.seen.append(Seen(self.command, self.path, headers, body,
                                        self.client_address[1]))
                queue = server.script.get(self.path)
                reply = queue.pop(0) if queue else Reply(
                    200 if self.command == "GET" else 202)
                self.send_response_only(reply.status)
                for name, value in reply.headers:
                    self._headers_buffer.append(name.encode() + b": " + value + b"\r\n")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's backoff instead of waiting it out."""
    recorded: list[float] = []
    monkeypatch.setattr(runtime_api.time, "sleep", recorded.append)
    return recorded


NEXT = "/2018-06-01/runtime/invocation/next"


def invocation_reply(request_id: str = "rid-1", body: bytes = b'{"a": 1}',
                     **extra: str) -> Reply:
    headers = [("Lambda-Runtime-Aws-Request-Id", request_id.encode()),
               ("Lambda-Runtime-Deadline-Ms", b"1700000000000"),
               ("Lambda-Runtime-Invoked-Function-Arn", b"arn:aws:lambda:us-east-1:1:function:f"),
               ("Content-Type", b"application/json")]
    headers += [(k.replace("_", "-"), v.encode()) for k, v in extra.items()]
    return Reply(200, headers, body)


def test_next_parses_the_invocation(server: Server) -> None:
    server.script[NEXT] = [invocation_reply(Lambda_Runtime_Trace_Id="Root=1-x",
                                            Lambda_Runtime_Aws_Tenant_Id="t-9")]
    job = RuntimeAPI(server.address).next()
    assert (job.request_id, job.deadline_ms, job.body) == ("rid-1", 1700000000000, b'{"a": 1}')
    assert job.header("Lambda-Runtime-Trace-Id") == "Root=1-x"
    assert job.header("lambda-runtime-aws-tenant-id") == "t-9"
    assert job.header("Content-Type") == "application/json"
    assert job.header("Lambda-Runtime-Client-Context") is None
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("GET", NEXT)
    assert seen.headers["user-agent"].startswith(b"forkric/")


def test_missing_deadline_defaults_to_three_seconds(server: Server) -> None:
    server.script[NEXT] = [Reply(200, [("Lambda-Runtime-Aws-Request-Id", b"r")], b"")]
    before = int(time.time() * 1000)
    job = RuntimeAPI(server.address).next()
    assert before + 2_900 <= job.deadline_ms <= int(time.time() * 1000) + 3_000


def test_utf8_headers_are_decoded(server: Server) -> None:
    context = json.dumps({"custom": {"name": "José 😀"}}, ensure_ascii=False)
    server.script[NEXT] = [Reply(200, [
        ("Lambda-Runtime-Aws-Request-Id", b"r"), ("Lambda-Runtime-Deadline-Ms", b"1"),
        ("Lambda-Runtime-Client-Context", context.encode("utf-8")),
        ("Lambda-Runtime-Aws-Tenant-Id", "tén".encode()),
        ("X-Latin", b"caf\xe9")])]
    job = RuntimeAPI(server.address).next()
    assert job.header("Lambda-Runtime-Client-Context") == context
    assert job.header("Lambda-Runtime-Aws-Tenant-Id") == "tén"
    assert job.header("X-Latin") == "caf\xe9"  # not UTF-8: left as it came
    ctx = invocation.make_context(job)
    assert ctx.client_context is not None
    assert ctx.client_context.custom == {"name": "José 😀"}


def test_one_kept_alive_connection_for_many_calls(server: Server) -> None:
    server.script[NEXT] = [invocation_reply(f"r{i}") for i in range(5)]
    api = RuntimeAPI(server.address)
    for i in range(5):
        job = api.next()
        assert job.request_id == f"r{i}"
        assert api.post_response(job.request_id, b"ok", "application/json") == 202
    api.post_error("r9", {"errorType": "E", "errorMessage": "m"})
    assert len(server.seen) == 11
    assert len({seen.client_port for seen in server.seen}) == 1
    api.close()
    assert api.conn.sock is None


def test_post_response(server: Server) -> None:
    api = RuntimeAPI(server.address)
    assert api.post_response("rid-7", b'"\xc3\xa9"', "application/json") == 202
    assert api.post_response("rid-8", b"\x00raw", "application/unknown") == 202
    first, second = server.seen
    assert (first.method, first.path, first.body) == (
        "POST", "/2018-06-01/runtime/invocation/rid-7/response", b'"\xc3\xa9"')
    assert first.headers["content-type"] == b"application/json"
    assert second.headers["content-type"] == b"application/unknown"


def test_413_is_passed_back(server: Server) -> None:
    server.script["/2018-06-01/runtime/invocation/r/response"] = [Reply(413, [], b"too big")]
    api = RuntimeAPI(server.address)
    assert api.post_response("r", b"x" * 1000, "application/json") == 413
    assert api.post_response("r", b"x", "application/json") == 202  # the connection survives


@pytest.mark.parametrize("path", ["/2018-06-01/runtime/invocation/r/response",
                                  "/2018-06-01/runtime/invocation/r/error"])
def test_500_means_exit(server: Server, path: str) -> None:
    server.script[path] = [Reply(500, [], b'{"errorType": "x"}')]
    api = RuntimeAPI(server.address)
    with pytest.raises(RuntimeAPIExit):
        if path.endswith("response"):
            api.post_response("r", b"{}", "application/json")
        else:
            api.post_error("r", {"errorType": "E"})


def test_500_on_next_means_exit_without_retry(server: Server, sleeps: list[float]) -> None:
    server.script[NEXT] = [Reply(500), invocation_reply()]
    with pytest.raises(RuntimeAPIExit):
        RuntimeAPI(server.address).next()
    assert len(server.seen) == 1
    assert sleeps == []


def test_next_retries_with_backoff_then_succeeds(server: Server, sleeps: list[float]) -> None:
    server.script[NEXT] = [Reply(503), Reply(404), Reply(400), invocation_reply("late")]
    job = RuntimeAPI(server.address).next()
    assert job.request_id == "late"
    assert len(server.seen) == 4
    assert len(sleeps) == 3
    assert sleeps == sorted(set(sleeps))  # growing


def test_next_gives_up_after_its_retries(server: Server, sleeps: list[float]) -> None:
    server.script[NEXT] = [Reply(503) for _ in range(20)]
    api = RuntimeAPI(server.address, next_retries=6, max_backoff_s=0.5)
    with pytest.raises(RuntimeAPIExit):
        api.next()
    assert len(server.seen) == 7
    assert len(sleeps) == 6
    assert all(0 < s <= 0.5 for s in sleeps)
    assert sleeps[-1] == 0.5 and sleeps[0] < sleeps[1]


def test_next_retries_when_nothing_listens(sleeps: list[float]) -> None:
    srv = Server()
    address = srv.address
    srv.close()
    api = RuntimeAPI(address, next_retries=3)
    with pytest.raises(RuntimeAPIExit) as info:
        api.next()
    assert len(sleeps) == 3
    assert "could not be reached" in str(info.value)


def test_next_reconnects_after_the_server_drops_the_connection(server: Server) -> None:
    api = RuntimeAPI(server.address)
    server.script[NEXT] = [invocation_reply("a"), invocation_reply("b")]
    assert api.next().request_id == "a"
    assert api.conn is not None and api.conn.sock is not None
    api.conn.sock.close()  # as if the peer had gone away between calls
    assert api.next().request_id == "b"


def test_post_error_body_and_headers(server: Server) -> None:
    error = {"errorMessage": "é😀", "errorType": "MyError", "requestId": "r", "stackTrace": []}
    cause = {"working_directory": "/var/task", "exceptions": [], "paths": []}
    assert RuntimeAPI(server.address).post_error("r", error, cause) == 202
    (seen,) = server.seen
    assert seen.path == "/2018-06-01/runtime/invocation/r/error"
    assert json.loads(seen.body) == error
    assert seen.headers["lambda-runtime-function-error-type"] == b"MyError"
    assert json.loads(seen.headers["lambda-runtime-function-xray-error-cause"]) == cause
    assert seen.headers["content-type"] == b"application/json"


def test_non_ascii_error_type_header_is_sent_as_utf8(server: Server) -> None:
    RuntimeAPI(server.address).post_error("r", {"errorType": "Érreur😀", "errorMessage": "m"})
    assert server.seen[0].headers["lambda-runtime-function-error-type"] == "Érreur😀".encode()


def test_missing_error_type_header_falls_back(server: Server) -> None:
    RuntimeAPI(server.address).post_error("r", {"errorType": "", "errorMessage": "m"})
    assert server.seen[0].headers["lambda-runtime-function-error-type"] == b"Unhandled"


def test_xray_cause_over_one_mib_is_dropped(server: Server) -> None:
    api = RuntimeAPI(server.address)
    small = {"paths": ["p" * 1000]}
    big = {"paths": ["p" * (1024 * 1024)]}
    api.post_error("a", {"errorType": "E"}, small)
    api.post_error("b", {"errorType": "E"}, big)
    assert "lambda-runtime-function-xray-error-cause" in server.seen[0].headers
    assert "lambda-runtime-function-xray-error-cause" not in server.seen[1].headers
    assert json.loads(server.seen[1].body) == {"errorType": "E"}


def test_xray_limit_is_awslambdaric_s() -> None:
    headers = runtime_api._error_headers({"errorType": "E"}, {"k": "x" * (1024 * 1024 - 10)})
    assert len(headers[runtime_api.XRAY_CAUSE_HEADER]) == 1024 * 1024 - 1  # < 1 MiB: kept
    headers = runtime_api._error_headers({"errorType": "E"}, {"k": "x" * (1024 * 1024 - 9)})
    assert runtime_api.XRAY_CAUSE_HEADER not in headers  # == 1 MiB: dropped


def test_post_init_error(server: Server) -> None:
    error = {"errorMessage": "Unable to import module 'x': No module named 'x'",
             "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}
    assert RuntimeAPI(server.address).post_init_error(error) == 202
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", "/2018-06-01/runtime/init/error")
    assert seen.headers["lambda-runtime-function-error-type"] == b"Runtime.ImportModuleError"
    assert json.loads(seen.body) == error
    assert "lambda-runtime-function-xray-error-cause" not in seen.headers


def test_address_parsing() -> None:
    api = RuntimeAPI("localhost:9001")
    assert (api.host, api.port) == ("localhost", 9001)
    api = RuntimeAPI("runtime")
    assert (api.host, api.port) == ("runtime", 80)


NATIVE = """
    import runtime_client
    runtime_client.initialize_client("test")
    print(repr(runtime_client.next()))
"""


@pytest.mark.parametrize("extra", [
    {},
    {"Lambda-Runtime-Trace-Id": b"Root=1-abc", "Lambda-Runtime-Aws-Tenant-Id": b"t1",
     "Lambda-Runtime-Client-Context": '{"custom": {"n": "José 😀"}}'.encode(),
     "Lambda-Runtime-Cognito-Identity": b'{"cognitoIdentityId": "i"}'},
    {"Lambda-Runtime-Trace-Id": b"", "Lambda-Runtime-Aws-Tenant-Id": b"",
     "Lambda-Runtime-Client-Context": b"", "Lambda-Runtime-Cognito-Identity": b""},
], ids=["minimal", "full", "empty"])
def test_headers_as_awslambdaric_native_client_reads_them(server: Server,
                                                          extra: dict[str, bytes]) -> None:
    # awslambdaric 4.2.2's own C client (runtime_client) reads the same reply in a subprocess.
    base = [("Lambda-Runtime-Aws-Request-Id", b"rid-x"),
            ("Lambda-Runtime-Deadline-Ms", b"1700000000000"),
            ("Lambda-Runtime-Invoked-Function-Arn", b"arn:f"),
            ("Content-Type", b"application/json")]
    reply = Reply(200, base + list(extra.items()), b'{"k": 1}')
    server.script[NEXT] = [reply, Reply(200, reply.headers, reply.body)]
    body, theirs = ast.literal_eval(
        run_python(NATIVE, {"AWS_LAMBDA_RUNTIME_API": server.address}))
    job = RuntimeAPI(server.address).next()
    ctx = invocation.make_context(job)
    assert job.body == body
    assert job.request_id == theirs["Lambda-Runtime-Aws-Request-Id"]
    assert job.deadline_ms == theirs["Lambda-Runtime-Deadline-Ms"]
    assert ctx.invoked_function_arn == theirs["Lambda-Runtime-Invoked-Function-Arn"]
    assert ctx.tenant_id == theirs["Lambda-Runtime-Aws-Tenant-Id"]
    assert job.header("Content-Type") == theirs["Content-Type"]
    # what the runtime then does with them: trace id env, client context, identity
    assert (job.header("Lambda-Runtime-Trace-Id") or None) == theirs["Lambda-Runtime-Trace-Id"]
    assert (job.header("Lambda-Runtime-Client-Context") or None) == theirs[
        "Lambda-Runtime-Client-Context"]
    assert (job.header("Lambda-Runtime-Cognito-Identity") or None) == theirs[
        "Lambda-Runtime-Cognito-Identity"]


def test_invocation_id_is_sent_back_with_the_answer(server: Server) -> None:
    """Managed Instances name each invocation; awslambdaric's native client echoes the name."""
    api = RuntimeAPI(server.address)
    api.post_response("r1", b"{}", "application/json", invocation_id="inv-1")
    api.post_error("r2", {"errorType": "E", "errorMessage": "m"}, None, invocation_id="inv-2")
    api.post_response("r3", b"{}", "application/json")
    sent = [seen.headers.get("lambda-runtime-invocation-id") for seen in server.seen]
    assert sent == [b"inv-1", b"inv-2", None]


class Holding:
    """A runtime_api.Holder that records what it is told, and whether the body had arrived."""

    def __init__(self) -> None:
        self.told: list[tuple[str, ...]] = []

    def hold(self, request_id: str, deadline_ms: int) -> None:
        self.told.append(("hold", request_id, str(deadline_ms)))

    def release(self) -> None:
        self.told.append(("release",))


def test_the_holder_holds_from_the_head_and_is_released_by_a_failed_answer(
        server: Server, sleeps: list[float]) -> None:
    """A worker holds its invocation from the head of /next's answer (a worker killed while a
    5 MB body arrives then died holding it: reported at once, not left to its timeout); an
    answer that fails after all releases it; a refused poll (403) never held anything."""
    server.script[NEXT] = [Reply(403, [], b"{}"), invocation_reply("rid-7")]
    holding = Holding()
    job = RuntimeAPI(server.address).next(holder=holding)
    assert job.request_id == "rid-7"
    assert holding.told == [("release",), ("hold", "rid-7", "1700000000000")]
