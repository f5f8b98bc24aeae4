"""Response streaming end to end: a streaming handler under `forkric local`, read by boto3's
invoke_with_response_stream (the real client), by a raw socket, and by the buffered Invoke API."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.local import Local, local, wait_for

APP = Path(__file__).parent / "stream_app"
STREAM_PATH = "/2021-11-15/functions/function/response-streaming-invocations"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    log_path = tmp_path_factory.mktemp("stream") / "local.log"
    with local("app.handler", APP, workers=2, timeout=30, log_path=log_path) as running:
        yield running


def client(service: Local) -> Any:
    return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{service.port}",
                        region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(read_timeout=120, retries={"max_attempts": 0}))


def stream(service: Local, event: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any],
                                                                          list[bytes],
                                                                          dict[str, Any]]:
    """The answer's fields, its payload chunks, and its InvokeComplete event. Chunks that
    follow each other closely may arrive joined (HTTP keeps no chunk boundaries, nor does
    Lambda): the tests compare what was streamed, joined."""
    answer = client(service).invoke_with_response_stream(
        FunctionName="function", Payload=json.dumps(event).encode(), **kwargs)
    chunks, complete = [], None
    for event_ in answer["EventStream"]:
        if "PayloadChunk" in event_:
            assert complete is None, "a chunk after InvokeComplete"
            chunks.append(event_["PayloadChunk"]["Payload"])
        else:
            complete = event_["InvokeComplete"]
    assert complete is not None, "the stream ended without InvokeComplete"
    return answer, chunks, complete


def test_boto3_reads_each_chunk_and_the_completion(service: Local) -> None:
    answer, chunks, complete = stream(service, {"count": 3})
    assert answer["StatusCode"] == 200
    assert answer["ExecutedVersion"] == "$LATEST"
    assert answer["ResponseStreamContentType"] == "application/octet-stream"
    assert b"".join(chunks) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert "ErrorCode" not in complete


def test_the_first_chunk_arrives_before_the_handler_finishes(service: Local,
                                                             tmp_path: Path) -> None:
    # The handler yields its first chunk, then waits until the reader has seen it.
    gate = tmp_path / "seen"
    answer = client(service).invoke_with_response_stream(
        FunctionName="function", Payload=json.dumps({"count": 2, "wait_for": str(gate)}))
    events = iter(answer["EventStream"])
    assert next(events)["PayloadChunk"]["Payload"] == b"chunk 0\n"
    gate.touch()
    rest = list(events)
    assert rest[0]["PayloadChunk"]["Payload"] == b"chunk 1\n"
    assert "ErrorCode" not in rest[-1]["InvokeComplete"]


def test_an_error_before_the_first_chunk(service: Local) -> None:
    _, chunks, complete = stream(service, {"count": 3, "fail_at": 0})
    assert chunks == []
    assert complete["ErrorCode"] == "ValueError"
    assert complete["ErrorDetails"] == "failed before chunk 0"


def test_an_error_mid_stream(service: Local) -> None:
    _, chunks, complete = stream(service, {"count": 3, "fail_at": 2}, LogType="Tail")
    assert b"".join(chunks) == b"chunk 0\nchunk 1\n"
    assert complete["ErrorCode"] == "ValueError"
    assert complete["ErrorDetails"] == "failed before chunk 2"
    logged = base64.b64decode(complete["LogResult"]).decode()
    assert "[ERROR] ValueError: failed before chunk 2" in logged


def test_an_error_after_the_last_chunk(service: Local) -> None:
    _, chunks, complete = stream(service, {"count": 2, "fail_at": "end"})
    assert b"".join(chunks) == b"chunk 0\nchunk 1\n"
    assert complete["ErrorCode"] == "RuntimeError"


def test_a_chunk_that_is_not_bytes_or_str(service: Local) -> None:
    _, chunks, complete = stream(service, {"kind": "bad_chunk"})
    assert b"".join(chunks) == b"ok"
    assert complete["ErrorCode"] == "Runtime.MarshalError"


def test_a_worker_killed_mid_stream(service: Local) -> None:
    _, chunks, complete = stream(service, {"count": 3, "kill_at": 1})
    assert chunks == [b"chunk 0\n"]
    assert complete["ErrorCode"] == "Runtime.ExitError"
    assert "signal: killed" in complete["ErrorDetails"]
    service.ready(2)  # the supervisor replaced the worker


def test_async_generator_and_log_tail(service: Local) -> None:
    _, chunks, complete = stream(service, {"kind": "agen"}, LogType="Tail")
    assert b"".join(chunks) == b"async 0\nasync 1\nasync 2\n"
    assert "START RequestId" in base64.b64decode(complete["LogResult"]).decode()


def test_http_integration_prelude_reaches_the_invoker_as_is(service: Local) -> None:
    answer, chunks, _ = stream(service, {"kind": "http"})
    assert answer["ResponseStreamContentType"] == \
        "application/vnd.awslambda.http-integration-response"
    prelude, separator, body = b"".join(chunks).partition(b"\0" * 8)
    assert separator and body == "<h1>h\u00e9llo</h1>".encode()
    assert json.loads(prelude) == {"statusCode": 201, "cookies": ["a=1; Path=/"],
                                   "headers": {"content-type": "text/html", "x-custom": "1"}}


def test_a_plain_value_of_a_streaming_handler_is_one_chunk(service: Local) -> None:
    answer, chunks, _complete = stream(service, {"kind": "value"})
    assert chunks == [b'{"plain": "value"}']
    assert answer["ResponseStreamContentType"] == "application/json"


def test_buffered_invoke_gathers_the_stream(service: Local) -> None:
    reply = service.invoke({"count": 3})
    assert reply.status == 200 and reply.body == b"chunk 0\nchunk 1\nchunk 2\n"
    failed = service.invoke({"count": 3, "fail_at": 1})
    assert failed.headers["x-amz-function-error"] == "Unhandled"
    assert json.loads(failed.body)["errorType"] == "ValueError"


def _raw_stream_request(port: int, event: dict[str, Any]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = json.dumps(event).encode()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
                 % (STREAM_PATH.encode(), len(body), body))
    return sock


def test_a_reader_that_leaves_mid_stream_does_not_block_the_worker(service: Local,
                                                                   tmp_path: Path) -> None:
    # 64 MiB: far more than the socket buffers and the service's queue hold. A worker left
    # blocked on the reader that left would never finish its generator (and write `done`).
    done = tmp_path / "done"
    sock = _raw_stream_request(service.port, {"kind": "big", "mb": 64, "done": str(done)})
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    wait_for(done.exists, 60, "the streaming handler ran to its end")
    _, chunks, complete = stream(service, {"count": 1})  # and the service serves on
    assert chunks == [b"chunk 0\n"] and "ErrorCode" not in complete


def test_concurrent_streams_stay_apart(service: Local) -> None:
    results: list[Any] = [None] * 4

    def run(index: int) -> None:
        results[index] = stream(service, {"count": 5 + index, "gap": 0.01})[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, chunks in enumerate(results):
        assert b"".join(chunks) == b"".join(f"chunk {i}\n".encode() for i in range(5 + index))


def test_a_stuck_stream_is_ended_at_its_deadline(tmp_path: Path) -> None:
    gate = tmp_path / "never"
    with local("app.handler", APP, workers=1, timeout=2) as short:
        _, chunks, complete = stream(short, {"count": 2, "wait_for": str(gate)})
        assert chunks == [b"chunk 0\n"]
        assert complete["ErrorCode"] == "Sandbox.Timedout"
        assert complete["ErrorDetails"] == "Task timed out after 2.00 seconds"
        short.ready(1)  # the stuck worker was killed and replaced
        _, chunks, _ = stream(short, {"count": 1})
        assert chunks == [b"chunk 0\n"]


def test_an_init_error_is_named_in_invoke_complete(tmp_path: Path) -> None:
    """It was a bare 502, which boto3 raised as "An error occurred (502) when calling the
    InvokeWithResponseStream operation: " with no word of the import error."""
    with local("missing_module.handler", tmp_path, workers=1, wait_ready=False) as broken:
        answer, chunks, complete = stream(broken, {})
    assert answer["StatusCode"] == 200 and chunks == []
    assert complete["ErrorCode"] == "Runtime.ImportModuleError"
    assert "No module named 'missing_module'" in complete["ErrorDetails"]


@pytest.fixture(scope="module")
def url_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    log_path = tmp_path_factory.mktemp("url") / "local.log"
    with local("app.handler", APP, "--function-url", workers=1, timeout=30,
               log_path=log_path) as running:
        yield running


def test_curl_sees_the_first_chunk_before_the_handler_finishes(url_service: Local,
                                                               tmp_path: Path) -> None:
    gate = tmp_path / "seen"
    event = json.dumps({"count": 2, "wait_for": str(gate)})
    curl = subprocess.Popen(
        ["curl", "-N", "-sS", "--max-time", "60", "-H", "content-type: application/json",
         "--data", event, f"http://127.0.0.1:{url_service.port}/any/path?x=1"],
        stdout=subprocess.PIPE)
    assert curl.stdout is not None
    try:
        assert curl.stdout.readline() == b"chunk 0\n"  # while the handler waits for `gate`
        gate.touch()
        assert curl.stdout.read() == b"chunk 1\n"
    finally:
        curl.stdout.close()
        assert curl.wait(60) == 0


def _http(port: int, body: bytes, method: str = "POST") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, "/shop/cart?item=a&item=b", body,
                 {"content-type": "application/json", "cookie": "s=1; t=2"})
    return conn.getresponse()


def test_function_url_prelude_sets_status_headers_and_cookies(url_service: Local) -> None:
    reply = _http(url_service.port, json.dumps({"kind": "http"}).encode())
    assert reply.status == 201
    assert reply.getheader("content-type") == "text/html"
    assert reply.getheader("x-custom") == "1"
    assert reply.getheader("set-cookie") == "a=1; Path=/"
    assert reply.getheader("transfer-encoding") == "chunked"
    assert reply.read() == "<h1>h\u00e9llo</h1>".encode()


def test_function_url_buffered_answers_and_errors(url_service: Local) -> None:
    reply = _http(url_service.port, json.dumps({"kind": "value"}).encode())
    assert (reply.status, reply.read()) == (200, b'{"plain": "value"}')
    failed = _http(url_service.port, json.dumps({"count": 2, "fail_at": 0}).encode())
    assert (failed.status, failed.read()) == (502, b"Internal Server Error")
    # An error after the body began cannot change the status: the body ends where it failed.
    late = _http(url_service.port, json.dumps({"count": 3, "fail_at": 2}).encode())
    assert (late.status, late.read()) == (200, b"chunk 0\nchunk 1\n")



def test_locust_streaming_user_records_first_byte_apart(service: Local, tmp_path: Path) -> None:
    import csv
    import sys

    from tests.support.rie import base_env

    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "locust", "-f", str(repo / "loadtest/locustfile_streaming.py"),
            "--headless", "--host", f"http://127.0.0.1:{service.port}", "-u", "2", "-r", "2",
            "-t", "3s", "--stop-timeout", "5", "--csv", str(tmp_path / "run"), "--only-summary",
            "--exit-code-on-error", "0", "--event", '{"count": 3, "gap": 0.05}']
    done = subprocess.run(argv, cwd=repo, env=base_env(), capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open(newline="") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    first, total = rows["stream: first byte"], rows["stream: total"]
    assert int(total["Request Count"]) > 3 and int(rows["Aggregated"]["Failure Count"]) == 0
    # Three chunks 50 ms apart: the first byte comes at least 100 ms before the end.
    assert float(total["Median Response Time"]) - float(first["Median Response Time"]) >= 90
    assert float(total["Average Content Size"]) == len(b"chunk 0\nchunk 1\nchunk 2\n")


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_the_worker_memory_stays_flat_over_a_long_stream(tmp_path: Path) -> None:
    with local("app.handler", APP, workers=1, timeout=60) as one:
        stream(one, {"kind": "big", "mb": 1})
        pid = next(s["pid"] for s in one.status()["workers"]["slots"] if s["pid"])
        before = _peak_rss_kb(pid)
        _, chunks, complete = stream(one, {"kind": "big", "mb": 128})
        assert sum(map(len, chunks)) == 128 * 1024 * 1024 and "ErrorCode" not in complete
        # The worker's peak resident memory (its high-water mark) grew by less than a tenth of
        # what it streamed: it held one chunk at a time.
        grown = _peak_rss_kb(pid) - before
        assert grown < 12 * 1024, grown


def test_a_recycle_waits_for_the_stream_to_end(tmp_path: Path) -> None:
    with local("app.handler", APP, "--max-requests", "1", workers=1, timeout=30) as one:
        for _ in range(3):
            _, chunks, complete = stream(one, {"count": 3, "gap": 0.05})
            assert b"".join(chunks) == b"chunk 0\nchunk 1\nchunk 2\n"
            assert "ErrorCode" not in complete
        wait_for(lambda: one.status()["workers"]["recycles"] >= 2, 30, "the worker recycled")


def test_an_event_invocation_of_a_streaming_function_is_read_to_its_end(service: Local,
                                                                         tmp_path: Path) -> None:
    # Nobody reads an Event invocation's answer: its stream must not wait for a reader.
    done = tmp_path / "done"
    reply = service.invoke({"kind": "big", "mb": 16, "done": str(done)},
                           headers={"X-Amz-Invocation-Type": "Event"})
    assert reply.status == 202
    wait_for(done.exists, 25, "the Event invocation's stream ran to its end")
