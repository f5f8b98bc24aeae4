"""`forkric local` against hostile local callers (issue 15, fault 3, each replayed as found): the
Runtime API answers only the runtime's own processes, a request id only on the connection it was
handed out on, an init error only before init is over; the Invoke API refuses what a web page
makes a browser send."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
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
    log_path = tmp_path_factory.mktemp("callers") / "local.log"
    with local("app.ok", APP, workers=2, timeout=10, log_path=log_path) as running:
        yield running


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        conn.close()


def in_background(target: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)
    thread.start()
    return thread, out


def busy_request_id(service: Local) -> str:
    def held() -> str:
        slots = service.status()["workers"].get("slots", [])
        return next((s["request_id"] for s in slots if s["state"] == "busy"), "")
    return wait_for(held, 20, "an invocation running")


def idle_slots(service: Local) -> list[dict[str, Any]]:
    slots: list[dict[str, Any]] = service.status()["workers"]["slots"]
    return slots if all(slot["state"] == "idle" for slot in slots) else []


def test_a_stranger_cannot_take_an_event(service: Local) -> None:
    """It used to GET /next and take the next caller's event."""
    pollers = service.status()["pollers"]
    status, _, body = call(service.runtime_port, "GET", "/2018-06-01/runtime/invocation/next")
    assert status == 403 and json.loads(body)["errorType"] == "AccessDeniedException"
    assert service.status()["pollers"] == pollers
    assert service.invoke({"n": 1}).json()["event"] == {"n": 1}


def test_a_stranger_cannot_answer_a_live_invocation(tmp_path: Path) -> None:
    """It used to read a live request id from /status, POST its response, and the caller got
    the forged answer."""
    with local("app.slow", APP, workers=1, timeout=10, log_path=tmp_path / "log") as service:
        thread, replies = in_background(lambda: service.invoke({"s": 1.5}))
        request_id = busy_request_id(service)
        for action in ("response", "error"):
            status, _, body = call(service.runtime_port, "POST",
                                   f"/2018-06-01/runtime/invocation/{request_id}/{action}",
                                   b'{"forged": true}')
            assert status == 403, body
        thread.join(30)
    reply: Reply = replies[0]
    assert reply.status == 200 and reply.json()["slept"] == 1.5


def test_a_stranger_cannot_fail_everything_with_an_init_error(service: Local) -> None:
    """It used to POST /runtime/init/error: every running and queued invocation got 502 and the
    healthy runtime was marked init_failed."""
    status, _, _ = call(service.runtime_port, "POST", "/2018-06-01/runtime/init/error",
                        b'{"errorMessage": "forged", "errorType": "Forged"}')
    assert status == 403
    assert service.status()["runtime"]["init_failed"] is False
    assert service.invoke({"n": 2}).status == 200


def test_inside_the_runtime_an_init_error_after_init_is_refused(tmp_path: Path) -> None:
    """Even from a process of the runtime (here a handler, on a connection of its own): init is
    over once a worker asked for work; the RIE answers 403 InvalidStateTransition (observed)."""
    with local("app.runtime_api_call", APP, workers=2, timeout=10,
               log_path=tmp_path / "log") as service:
        init = service.invoke({"path": "/2018-06-01/runtime/init/error"}).json()
        state = service.status()
        after = service.invoke({"s": 0})
    assert init["status"] == 403 and init["body"]["errorType"] == "InvalidStateTransition"
    assert state["runtime"]["init_failed"] is False
    assert after.status == 200 and after.json()["slept"] == 0


def test_a_worker_cannot_answer_for_another_worker(tmp_path: Path) -> None:
    """A request id is answered only on the connection it was handed out on, even from inside
    the runtime (forkric's workers keep one connection each)."""
    with local("app.runtime_api_call", APP, workers=2, timeout=10,
               log_path=tmp_path / "log") as service:
        thread, replies = in_background(lambda: service.invoke({"s": 2}))
        request_id = busy_request_id(service)
        forged = service.invoke({"path": f"/2018-06-01/runtime/invocation/{request_id}/response",
                                 "body": '"forged"'}).json()
        thread.join(30)
    assert forged["status"] == 403 and forged["body"]["errorType"] == "InvalidRequestID"
    assert replies[0].json()["slept"] == 2


@pytest.mark.parametrize(("headers", "status"), [
    ({"Host": "attacker.example"}, 403),  # DNS rebinding: a page's name for 127.0.0.1
    ({"Origin": "http://attacker.example"}, 403),  # a page's cross-origin simple POST
    ({"Origin": "null"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Host": "localhost"}, 200),
    ({"Host": "127.0.0.1:1"}, 200),
    ({}, 200),
])
def test_the_invoke_api_refuses_what_a_web_page_sends(service: Local, headers: dict[str, str],
                                                      status: int) -> None:
    got, answer_headers, body = call(service.port, "POST",
                                     "/2015-03-31/functions/function/invocations", b"{}",
                                     headers)
    assert got == status, body
    if status == 403:
        assert answer_headers["x-amzn-errortype"] == "AccessDeniedException"


def test_same_origin_is_served(service: Local) -> None:
    host = f"localhost:{service.port}"
    got, _, _ = call(service.port, "POST", "/2015-03-31/functions/function/invocations", b"{}",
                     {"Host": host, "Origin": f"http://{host}"})
    assert got == 200


def test_status_shows_request_ids_of_busy_workers_only(tmp_path: Path) -> None:
    """Idle slots kept their last request id (issue 15, item 6)."""
    with local("app.slow", APP, workers=2, timeout=10, log_path=tmp_path / "log") as service:
        service.invoke({"s": 0})
        wait_for(lambda: idle_slots(service), 20, "workers idle")
        thread, _ = in_background(lambda: service.invoke({"s": 1.5}))
        live = busy_request_id(service)
        slots = service.status()["workers"]["slots"]
        thread.join(30)
        # The worker marks itself idle just after it posts the answer: wait for that.
        after = wait_for(lambda: idle_slots(service), 20, "workers idle")
    assert [s["request_id"] for s in slots if s["state"] == "busy"] == [live]
    assert all(s["request_id"] == "" for s in slots if s["state"] != "busy")
    assert all(s["request_id"] == "" for s in after)


def test_an_error_over_the_limit_is_named_not_dropped(tmp_path: Path) -> None:
    """A 7 MB error message came back as {"errorMessage": "", "errorType": "RuntimeError"}."""
    with local("app.big_error", APP, workers=1, timeout=10, log_path=tmp_path / "log") as service:
        reply = service.invoke({"n": 7 * 1024 * 1024})
        small = service.invoke({"n": 10})
    assert reply.status == 200 and reply.headers["x-amz-function-error"] == "Unhandled"
    error = reply.json()
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "exceeded maximum allowed payload size (6291556 bytes)" in error["errorMessage"]
    assert small.json() == {"errorMessage": "x" * 10, "errorType": "RuntimeError",
                            "requestId": small.json()["requestId"],
                            "stackTrace": small.json()["stackTrace"]}


def test_a_caller_that_pipelines_and_leaves_costs_no_traceback(tmp_path: Path) -> None:
    """Its answers were written to its closed transport: one traceback per such caller."""
    request = (b"POST /2015-03-31/functions/function/invocations HTTP/1.1\r\n"
               b"Host: localhost\r\nContent-Length: 10\r\n\r\n{\"s\": 0.2}")
    with local("app.slow", APP, workers=1, timeout=10, log_path=tmp_path / "log") as service:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", service.port)) as sock:
                sock.sendall(request * 3)
        wait_for(lambda: service.status()["invocations"]["succeeded"] == 3, 30,
                 "the three first invocations answered")
        after = service.invoke({"s": 0})
        log = service.log()
    assert after.status == 200
    assert "Traceback" not in log and "unable to perform operation" not in log, log[-2000:]


def test_a_runtime_told_to_stop_is_started_again_without_backoff(tmp_path: Path) -> None:
    """A clean exit (SIGTERM to the runtime) counted as a failure: up to 5 s before a restart."""
    with local("app.ok", APP, workers=1, timeout=10, log_path=tmp_path / "log") as service:
        for start in (2, 3, 4):
            os.kill(service.status()["runtime"]["pid"], signal.SIGTERM)
            # Ready: this runtime's worker polls (a stale poll of the last one does not count).
            wait_for(lambda start=start: (state := service.status())["runtime"]["starts"]
                     == start and state["ready"], 30, f"runtime start {start} ready")
        log = service.log()
        exits = service.status()["runtime"]["exits"]
    assert exits == [0, 0, 0]
    assert log.count("the runtime ended (exit status 0); starting it again in 0.0 s") == 3
