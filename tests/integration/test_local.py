"""`forkric local` end to end: real processes, real HTTP, every mapping of the Invoke API."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.local import Local, local, wait_for
from tests.support.rie import Reply

APP = Path(__file__).parent / "local_app"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """One service for the tests that leave it as they found it: 2 workers, 2 s timeout."""
    log_path = tmp_path_factory.mktemp("local") / "local.log"
    with local("app.ok", APP, workers=2, timeout=2, log_path=log_path) as running:
        yield running


def in_threads(count: int, target: Any) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        results[index] = target(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def tail(reply: Reply) -> str:
    return base64.b64decode(reply.headers["x-amz-log-result"]).decode()


# Success, headers, pass-through.

def test_success(service: Local) -> None:
    reply = service.invoke({"a": 1})
    assert reply.status == 200
    assert reply.json() == {"ok": True, "event": {"a": 1}}
    assert "x-amz-function-error" not in reply.headers
    assert reply.headers["x-amz-executed-version"] == "$LATEST"
    assert reply.headers["x-amzn-requestid"]


def test_tail_log_is_the_invocations_own(service: Local) -> None:
    threads, results = in_threads(8, lambda i: service.invoke(
        {"n": i}, headers={"X-Amz-Log-Type": "Tail"}))
    for thread in threads:
        thread.join()
    for reply in results:
        request_id = reply.headers["x-amzn-requestid"]
        text = tail(reply)
        assert text.startswith(f"START RequestId: {request_id} Version: $LATEST\n")
        assert f"hello from {request_id}\n" in text
        assert text.count("hello from") == 1, text
        assert f"END RequestId: {request_id}\n" in text
        assert f"REPORT RequestId: {request_id}\tDuration: " in text


def test_no_tail_unless_asked(service: Local) -> None:
    assert "x-amz-log-result" not in service.invoke({}).headers


def test_dry_run(service: Local) -> None:
    before = service.status()["invocations"]["accepted"]
    reply = service.invoke({}, headers={"X-Amz-Invocation-Type": "DryRun"})
    assert (reply.status, reply.body) == (204, b"")
    assert service.status()["invocations"]["accepted"] == before


def test_event_runs_later(service: Local, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    reply = service.invoke({"touch": str(marker)}, headers={"X-Amz-Invocation-Type": "Event"})
    assert (reply.status, reply.body) == (202, b"")
    wait_for(marker.exists, 10, "the Event invocation ran")
    assert marker.read_text() == reply.headers["x-amzn-requestid"]


def test_unknown_invocation_type(service: Local) -> None:
    reply = service.invoke({}, headers={"X-Amz-Invocation-Type": "Sometimes"})
    assert reply.status == 400
    assert reply.headers["x-amzn-errortype"] == "InvalidParameterValueException"


def test_request_over_6_mb(service: Local) -> None:
    reply = service.invoke(raw=b'"' + b"x" * (6 * 1024 * 1024 - 1) + b'"')
    assert reply.status == 413
    assert reply.headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "6291456" in reply.json()["message"]


def test_invalid_client_context(service: Local) -> None:
    reply = service.invoke({}, headers={"X-Amz-Client-Context": "not base64!"})
    assert reply.status == 400
    assert reply.headers["x-amzn-errortype"] == "InvalidRequestContentException"


def http_request(port: int, method: str, path: str,
                 body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body)
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("api", "method", "path", "status"), [
    ("invoke", "GET", "/2015-03-31/functions/function/invocations", 405),
    ("invoke", "POST", "/2015-03-31/functions/function/nope", 404),
    ("invoke", "POST", "/2015-03-31/functions//invocations", 404),
    ("invoke", "POST", "/status", 405),
    ("invoke", "GET", "/", 404),
    ("runtime", "POST", "/2018-06-01/runtime/invocation/next", 405),
    ("runtime", "GET", "/2018-06-01/runtime/invocation/some-id/response", 405),
    ("runtime", "POST", "/2018-06-01/runtime/invocation/some-id/other", 404),
    ("runtime", "GET", "/2018-06-01/runtime/init/error", 405),
    ("runtime", "GET", "/2015-03-31/functions/function/invocations", 404),
])
def test_unknown_routes_and_methods(service: Local, api: str, method: str, path: str,
                                    status: int) -> None:
    port = service.port if api == "invoke" else service.runtime_port
    got, headers, _ = http_request(port, method, path, b"{}" if method == "POST" else None)
    assert got == status
    if status == 405:
        assert headers["allow"] in ("GET", "POST") and headers["allow"] != method
    # Nothing was queued or answered on the way.
    assert service.status()["queue_depth"] == 0


@pytest.mark.parametrize(("path", "arn"), [
    ("/2015-03-31/functions/my-fn/invocations",
     "arn:aws:lambda:us-east-1:012345678912:function:my-fn"),
    ("/2015-03-31/functions/my-fn/invocations?Qualifier=prod",
     "arn:aws:lambda:us-east-1:012345678912:function:my-fn:prod"),
    ("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Afn/"
     "invocations", "arn:aws:lambda:eu-west-1:123456789012:function:fn"),
])
def test_function_name_qualifier_or_arn_reach_the_context(tmp_path: Path, path: str,
                                                           arn: str) -> None:
    with local("app.ctx", APP, workers=1, log_path=tmp_path / "log") as service:
        status, _, body = http_request(service.port, "POST", path, b"{}")
    assert status == 200
    assert json.loads(body)["arn"] == arn


def test_a_caller_that_half_closes_still_gets_its_answer(service: Local) -> None:
    """`nc -N` and scripts that shut their side down after the request: an answer made at once
    (here a 404) must leave before the service closes its side. The service is paused while the
    request and the end of its stream arrive, so that it reads both in one go."""
    with socket.create_connection(("127.0.0.1", service.port)) as conn:
        service.process.send_signal(signal.SIGSTOP)
        try:
            conn.sendall(b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
            conn.shutdown(socket.SHUT_WR)
        finally:
            service.process.send_signal(signal.SIGCONT)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 404")
    assert received.endswith(b"404: Not Found")


def test_header_bytes_that_are_not_utf8_pass_through(tmp_path: Path) -> None:
    """A trace id with a byte that is not UTF-8 used to stop the runtime (the service failed to
    encode it for the worker, which took the 500 as the Runtime API telling it to exit)."""
    with local("app.ctx", APP, workers=1, log_path=tmp_path / "log") as service:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        conn.putrequest("POST", "/2015-03-31/functions/function/invocations")
        conn.putheader("X-Amzn-Trace-Id", b"Root=1-\xe9")
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        response = conn.getresponse()
        body = response.read()
        conn.close()
        status = service.status()
    assert response.status == 200, body
    assert json.loads(body)["trace"].startswith("Root=1-")
    assert status["runtime"]["starts"] == 1


@pytest.mark.parametrize(("path", "member"), [
    ("/2015-03-31/functions/fn%0Ax/invocations", "functionName"),
    ("/2015-03-31/functions/fn/invocations?Qualifier=a%0Db", "qualifier"),
    ("/2015-03-31/functions/fn%20x/invocations", "functionName"),
])
def test_a_function_name_lambda_would_refuse_is_refused(service: Local, path: str,
                                                        member: str) -> None:
    status, headers, body = http_request(service.port, "POST", path, b"{}")
    assert status == 400
    assert headers["x-amzn-errortype"] == "ValidationException"
    assert f"at '{member}' failed to satisfy constraint" in json.loads(body)["message"]
    assert service.status()["in_flight"] == 0


def test_dry_run_has_no_content_length(service: Local) -> None:
    reply = service.invoke({}, headers={"X-Amz-Invocation-Type": "DryRun"})
    assert reply.status == 204
    assert "content-length" not in reply.headers


def test_status_endpoint(service: Local) -> None:
    service.invoke({})
    status = service.status()
    assert status["queue_depth"] == 0
    assert status["in_flight"] == 0
    assert status["invocations"]["succeeded"] >= 1
    workers = status["workers"]
    assert {"recycles", "crashes", "kills", "spawns"} <= set(workers)
    assert len(workers["slots"]) == 2
    for slot in workers["slots"]:
        assert slot["state"] in ("idle", "busy")
        assert slot["pid"] > 0
        assert slot["rss_kb"] > 0 and slot["pss_kb"] > 0
        assert {"request_id", "invocations", "uss_kb"} <= set(slot)
    # A worker counts an invocation on its slot after posting its answer: the caller may be
    # answered first.
    wait_for(lambda: sum(slot["invocations"] for slot in service.status()["workers"]["slots"]),
             what="the invocation counted on a slot")


def test_a_handler_that_opens_nothing_is_imported_once(service: Local) -> None:
    """The service's own log connections are not the import's: with them taken for the
    import's, `--import-mode auto` imported the handler in every worker, sharing nothing."""
    assert "fork safety" not in service.log(), service.log()


def test_invoke_command(service: Local) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forkric", "invoke", "--port", str(service.port),
         "--payload", '{"b": 2}', "--log-type", "Tail"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP 200 OK\n")
    assert "--- log tail ---\nSTART RequestId: " in done.stdout
    assert '"b": 2' in done.stdout


# Handlers that fail in their own ways, or change the service: a service of their own each.

def test_function_error(tmp_path: Path) -> None:
    with local("app.boom", APP, workers=1, log_path=tmp_path / "log") as service:
        reply = service.invoke({})
    assert reply.status == 200
    assert reply.headers["x-amz-function-error"] == "Unhandled"
    body = reply.json()
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "bad thing")
    assert body["requestId"] == reply.headers["x-amzn-requestid"]
    assert body["stackTrace"] and "raise ValueError" in body["stackTrace"][-1]


def test_queue_beyond_workers_then_429(tmp_path: Path) -> None:
    with local("app.slow", APP, "--max-queue", "2", workers=1, log_path=tmp_path / "log"
               ) as service:
        threads, results = in_threads(3, lambda i: service.invoke({"s": 1}))
        wait_for(lambda: service.status()["queue_depth"] == 2, 10, "two queued")
        assert service.status()["in_flight"] == 1
        rejected = service.invoke({"s": 0})
        for thread in threads:
            thread.join()
        status = service.status()
    assert rejected.status == 429
    assert rejected.headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert [r.status for r in results] == [200, 200, 200]
    assert "x-amz-function-error" not in results[0].headers
    assert status["invocations"]["rejected"] == 1
    assert status["invocations"]["succeeded"] == 3


def test_timeout(tmp_path: Path) -> None:
    with local("app.slow", APP, workers=1, timeout=1, log_path=tmp_path / "log") as service:
        reply = service.invoke({"s": 30})
        assert reply.status == 200
        assert reply.headers["x-amz-function-error"] == "Unhandled"
        assert reply.body == b"Task timed out after 1.00 seconds"
        # The stuck worker is killed and replaced: the next invocation is served.
        wait_for(lambda: service.status()["workers"]["kills"] == 1, 15, "stuck worker killed")
        again = service.invoke({"s": 0})
        assert again.status == 200 and again.json()["slept"] == 0
        assert service.status()["invocations"]["timeouts"] == 1


def test_deadline_client_context_and_trace_id(tmp_path: Path) -> None:
    client_context = {"custom": {"k": "v"}, "client": {"app_title": "tests"}, "env": {}}
    headers = {"X-Amz-Client-Context": base64.b64encode(json.dumps(client_context).encode())
               .decode(), "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}
    with local("app.ctx", APP, workers=1, timeout=5, log_path=tmp_path / "log") as service:
        reply = service.invoke({}, headers=headers)
        plain = service.invoke({})
    assert reply.status == 200
    body = reply.json()
    assert body["custom"] == {"k": "v"}
    assert body["app_title"] == "tests"
    assert body["trace"] == headers["X-Amzn-Trace-Id"]
    assert 3000 < body["remaining_ms"] <= 5000
    assert body["arn"] == "arn:aws:lambda:us-east-1:012345678912:function:function"
    assert plain.json()["custom"] is None and plain.json()["trace"] is None


def test_a_client_context_written_on_several_lines_reaches_the_handler(tmp_path: Path) -> None:
    """Its JSON travels to the worker in a header, where line breaks cannot go."""
    text = '{\n  "custom": {"k": "v\u00e9"},\n  "env": {}\n}'
    header = base64.b64encode(text.encode()).decode()
    with local("app.ctx", APP, workers=1, log_path=tmp_path / "log") as service:
        reply = service.invoke({}, headers={"X-Amz-Client-Context": header})
    assert reply.status == 200
    assert reply.json()["custom"] == {"k": "v\u00e9"}


def test_tail_is_the_last_4_kb(tmp_path: Path) -> None:
    with local("app.chatty", APP, workers=1, log_path=tmp_path / "log") as service:
        reply = service.invoke({"lines": 300}, headers={"X-Amz-Log-Type": "Tail"})
    raw = base64.b64decode(reply.headers["x-amz-log-result"])
    assert len(raw) == 4096
    assert raw.decode().endswith("\t\n") and "REPORT RequestId" in raw.decode()
    assert "line 299 of" in raw.decode()


def test_response_over_6_mb(tmp_path: Path) -> None:
    limit = 6 * 1024 * 1024 + 100
    with local("app.big", APP, workers=1, log_path=tmp_path / "log") as service:
        fits = service.invoke({"n": limit - 2})  # a JSON string: two quotes more
        over = service.invoke({"n": limit - 1})
        # The runtime's POST got 413: the worker says so in its log.
        wait_for(lambda: "over the payload limit" in service.log(), 10, "the worker's 413")
    assert fits.status == 200 and len(fits.body) == limit
    assert over.status == 200
    assert over.headers["x-amz-function-error"] == "Unhandled"
    body = over.json()
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert f"({limit} bytes)" in body["errorMessage"]


def test_request_of_6_mb_exactly_is_taken(tmp_path: Path) -> None:
    with local("app.size", APP, workers=1, log_path=tmp_path / "log") as service:
        reply = service.invoke(raw=b'"' + b"x" * (6 * 1024 * 1024 - 2) + b'"')
    assert reply.status == 200
    assert reply.json() == {"length": 6 * 1024 * 1024 - 2}


def test_killed_worker_gives_exit_error(tmp_path: Path) -> None:
    with local("app.die", APP, workers=1, log_path=tmp_path / "log") as service:
        reply = service.invoke({}, headers={"X-Amz-Log-Type": "Tail"})
        status = wait_for(lambda: (s := service.status())["pollers"] == 1 and s, 15,
                          "a replacement worker")
    request_id = reply.headers["x-amzn-requestid"]
    assert reply.status == 200
    assert reply.headers["x-amz-function-error"] == "Unhandled"
    assert reply.json() == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"}
    assert f"about to die {request_id}" in tail(reply)
    assert status["workers"]["crashes"] == 1


def test_dead_runtime_is_started_again(tmp_path: Path) -> None:
    with local("app.kill_runtime", APP, workers=1, log_path=tmp_path / "log") as service:
        first_pid = service.status()["runtime"]["pid"]
        reply = service.invoke({})
        status = wait_for(lambda: (s := service.status())["pollers"] == 1 and s, 30,
                          "the runtime started again")
        pid = status["runtime"]["pid"]
        assert pid and pid != first_pid
        assert status["runtime"]["starts"] == 2
        assert status["runtime"]["exits"] == [-signal.SIGKILL]
    assert reply.status == 200
    assert reply.headers["x-amz-function-error"] == "Unhandled"
    assert reply.json()["errorMessage"] == (
        f"RequestId: {reply.headers['x-amzn-requestid']} Error: Runtime exited with error: "
        "signal: killed")


def test_init_error_then_fixed(tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    module = task / "flaky.py"
    module.write_text("raise RuntimeError('import fails')\n")
    with local("flaky.handler", task, workers=2, log_path=tmp_path / "log",
               wait_ready=False) as service:
        wait_for(lambda: service.status()["runtime"]["init_failed"], 15, "the init error")
        first = service.invoke({})
        second = service.invoke({})
        module.write_text("def handler(event, context):\n    return 'fixed'\n")
        fixed = service.invoke({})
        starts = service.status()["runtime"]["starts"]
    for reply in (first, second):
        assert reply.status == 502
        body = reply.json()
        assert (body["errorType"], body["errorMessage"], body["requestId"]) == (
            "RuntimeError", "import fails", "")
    assert (fixed.status, fixed.json()) == (200, "fixed")
    assert starts == 4  # at start, then once for each invocation, as Lambda initialises again


def test_sigterm_lets_the_busy_finish_and_stops(tmp_path: Path) -> None:
    with local("app.slow", APP, workers=2, log_path=tmp_path / "log") as service:
        runtime_pid = service.status()["runtime"]["pid"]
        threads, results = in_threads(1, lambda i: service.invoke({"s": 1}))
        wait_for(lambda: service.status()["in_flight"] == 1, 10, "one in flight")
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(30)
        threads[0].join()
    assert code == 0
    assert results[0].status == 200 and results[0].json()["slept"] == 1
    assert not _alive(runtime_pid)
    assert "forkric local: stopped" in service.log()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_taken_port_is_a_clear_error_not_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "forkric", "local", "app.ok", "--port",
                               str(port)], cwd=APP, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"forkric local: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_extra_is_named_not_a_traceback(tmp_path: Path) -> None:
    """Without uvicorn (here: a stand-in module that fails to import, first on the path),
    `forkric local` says which extra to install."""
    (tmp_path / "uvicorn.py").write_text("raise ImportError('No module named uvicorn')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "forkric", "local", "app.ok"], cwd=APP,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'forkric[local]'" in done.stderr
    assert "Traceback" not in done.stderr
