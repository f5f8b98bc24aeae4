"""Response streaming: the handler contract, the Runtime API framing byte for byte (a raw socket
records what the client sends), and the event-stream encoder against botocore's decoder."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from forkric import StreamingResponse, errors, invocation, response_stream, streaming
from forkric.local import eventstream
from forkric.local.asgi import Request
from forkric.local.function_url import event
from forkric.local.streams import Stream
from forkric.logs import Logs
from forkric.runtime_api import Invocation, RuntimeAPI


class RawServer:
    """Accepts one connection, records every byte of one request up to the end of its chunked
    body (the `0` chunk and its trailers), then answers `status`."""

    def __init__(self, status: int = 202) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.status = status
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while not self._complete():
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data
            conn.sendall(b"HTTP/1.1 %d Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"
                         % self.status)

    def _complete(self) -> bool:
        _head, sep, body = self.received.partition(b"\r\n\r\n")
        return bool(sep) and (body.startswith(b"0\r\n") or b"\r\n0\r\n" in body) and \
            body.endswith(b"\r\n\r\n")

    def request(self) -> tuple[list[bytes], bytes]:
        self.thread.join(10)
        head, _, body = self.received.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), body


def send(response: StreamingResponse, status: int = 202) -> tuple[list[bytes], bytes]:
    server = RawServer(status)
    api = RuntimeAPI(f"127.0.0.1:{server.port}", timeout=10)  # fails, never hangs
    streaming.send(api, "rid-1", response, "inv-1", Logs({}))
    return server.request()


def test_framing_byte_for_byte() -> None:
    head, body = send(StreamingResponse(iter([b"hello", "w\u00f6rld", b"", b"!"])))
    assert head[0] == b"POST /2018-06-01/runtime/invocation/rid-1/response HTTP/1.1"
    assert head[1:] == [
        b"Host: 127.0.0.1:%d" % int(head[1].rsplit(b":", 1)[1]), head[2],
        b"Content-Type: application/octet-stream",
        b"Lambda-Runtime-Function-Response-Mode: streaming",
        b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        b"Lambda-Runtime-Invocation-Id: inv-1",
        b"Transfer-Encoding: chunked"]
    assert head[2].startswith(b"User-Agent: forkric/")
    # Each chunk as yielded (the empty one skipped: it would end the body), then the last chunk.
    assert body == b"5\r\nhello\r\n6\r\nw\xc3\xb6rld\r\n1\r\n!\r\n0\r\n\r\n"


def test_http_integration_prelude_then_eight_nuls() -> None:
    head, body = send(StreamingResponse(iter(["<p>"]), status_code=404,
                                        headers={"content-type": "text/html"},
                                        cookies=["a=b"]))
    assert b"Content-Type: application/vnd.awslambda.http-integration-response" in head
    prelude = b'{"statusCode":404,"headers":{"content-type":"text/html"},"cookies":["a=b"]}'
    prelude += b"\0" * 8
    assert body == b"%x\r\n%s\r\n3\r\n<p>\r\n0\r\n\r\n" % (len(prelude), prelude)


@pytest.mark.parametrize("whole", [b"not found", "not found", bytearray(b"not found")])
def test_a_body_given_whole_is_one_chunk(whole: Any) -> None:
    """StreamingResponse(b"...", status_code=404) was iterated: bytes gave ints
    (Runtime.MarshalError) and a string one chunk per character."""
    _, body = send(StreamingResponse(whole, status_code=404))
    prelude = b'{"statusCode":404,"headers":{},"cookies":[]}' + b"\0" * 8
    assert body == b"%x\r\n%s\r\n9\r\nnot found\r\n0\r\n\r\n" % (len(prelude), prelude)


def test_error_mid_stream_goes_in_the_trailers(capsys: pytest.CaptureFixture[str]) -> None:
    def failing() -> Iterator[bytes]:
        yield b"part"
        raise KeyError("gone")

    _, body = send(StreamingResponse(failing()))
    chunks, _, trailers = body.partition(b"0\r\n")
    assert chunks == b"4\r\npart\r\n"
    lines = trailers.split(b"\r\n")
    assert lines[0] == b"Lambda-Runtime-Function-Error-Type: KeyError"
    assert lines[2:] == [b"", b""]
    name, _, encoded = lines[1].partition(b": ")
    assert name == b"Lambda-Runtime-Function-Error-Body"
    error = json.loads(base64.b64decode(encoded, validate=True))
    assert error["errorType"] == "KeyError" and error["errorMessage"] == "'gone'"
    assert error["requestId"] == "rid-1" and error["stackTrace"]
    assert "[ERROR] KeyError: 'gone'" in capsys.readouterr().out


def test_async_generator_chunks_and_its_finally_runs() -> None:
    closed: list[bool] = []

    async def body() -> Any:
        try:
            yield b"a"
            yield "b"
        finally:
            closed.append(True)

    _, sent = send(StreamingResponse(body()))
    assert sent == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
    assert closed == [True]


def test_error_before_the_first_chunk_is_an_ordinary_error_post() -> None:
    def failing() -> Iterator[bytes]:
        raise ValueError("early")
        yield b""  # pragma: no cover

    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                data += conn.recv(65536)
            seen.append(data)
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    api = RuntimeAPI(f"127.0.0.1:{server.getsockname()[1]}")
    streaming.send(api, "rid-2", StreamingResponse(failing()), None, Logs({}))
    thread.join(10)
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /2018-06-01/runtime/invocation/rid-2/error HTTP/1.1")
    assert json.loads(body)["errorMessage"] == "early"


def test_stream_over_the_limit_ends_with_response_size_too_large(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "STREAM_LIMIT", 10)
    _, body = send(StreamingResponse(iter([b"123456", b"789012", b"never"])))
    chunks, _, trailers = body.partition(b"0\r\n")
    assert chunks == b"6\r\n123456\r\n"
    assert b"Lambda-Runtime-Function-Error-Type: Function.ResponseSizeTooLarge" in trailers


def _job() -> Invocation:
    return Invocation("rid", 2**42, b"{}", {"content-type": "application/json"})


def test_unmarked_generator_is_a_marshal_error_as_in_awslambdaric() -> None:
    def handler(event: Any, context: Any) -> Iterator[bytes]:
        yield b"x"

    outcome = invocation.run(_job(), handler, Logs({}))
    assert outcome.stream is None and outcome.error is not None
    assert outcome.error["errorType"] == errors.MARSHAL_ERROR
    assert outcome.error["errorMessage"] == \
        "Unable to marshal response: Object of type generator is not JSON serializable"


def test_an_unmarked_handler_that_returns_a_streaming_response_streams() -> None:
    """It was Runtime.MarshalError ("Object of type StreamingResponse is not JSON
    serializable"): the answer of a user who forgot the mark, and no handler's before."""
    def handler(event: Any, context: Any) -> StreamingResponse:
        return StreamingResponse([b"a"], status_code=201)

    outcome = invocation.run(_job(), handler, Logs({}))
    assert outcome.error is None and outcome.stream is not None
    assert outcome.stream.status_code == 201


def test_marked_handler_streams_iterators_and_marshals_values() -> None:
    results: list[Any] = []

    @response_stream
    def handler(event: Any, context: Any) -> Any:
        return results[-1]

    assert streaming.wanted(handler) and handler.__name__ == "handler"
    for result in (iter([b"a"]), (c for c in "ab"), StreamingResponse([b"a"])):
        results.append(result)
        assert invocation.run(_job(), handler, Logs({})).stream is not None
    for plain in ({"a": 1}, ["a"], "text", 3, None):
        results.append(plain)
        outcome = invocation.run(_job(), handler, Logs({}))
        assert outcome.stream is None and outcome.body == json.dumps(plain).encode()


def test_the_setting_marks_every_handler() -> None:
    def handler(event: Any, context: Any) -> Iterator[bytes]:
        yield b"x"

    streaming.enable_for_all(True)
    try:
        outcome = invocation.run(_job(), handler, Logs({}))
    finally:
        streaming.enable_for_all(False)
    assert outcome.stream is not None and outcome.error is None
    assert list(streaming.Chunks(outcome.stream.body)) == [b"x"]


@pytest.mark.parametrize("payload", [b"", b"chunk", bytes(range(256)) * 300])
def test_event_stream_messages_decode_with_botocore(payload: bytes) -> None:
    decoder = EventStreamBuffer()
    decoder.add_data(eventstream.payload_chunk(payload))
    decoder.add_data(eventstream.invoke_complete("ValueError", "bad \u00e9", "bG9n"))
    chunk, complete = list(decoder)
    assert chunk.headers == {":event-type": "PayloadChunk", ":message-type": "event",
                             ":content-type": "application/octet-stream"}
    assert chunk.payload == payload
    assert complete.headers[":event-type"] == "InvokeComplete"
    assert json.loads(complete.payload) == {"ErrorCode": "ValueError",
                                            "ErrorDetails": "bad \u00e9", "LogResult": "bG9n"}


def test_event_stream_message_known_bytes() -> None:
    # The layout by hand: lengths, prelude CRC, one string header, payload, message CRC.
    import zlib

    raw = eventstream.message({"k": "v"}, b"p")
    headers = b"\x01k\x07\x00\x01v"
    prelude = (16 + len(headers) + 1).to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    expected = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + b"p"
    assert raw == expected + zlib.crc32(expected).to_bytes(4, "big")


def test_function_url_event_is_payload_format_2() -> None:
    scope = {"method": "PUT", "path": "/a b", "query_string": b"x=1&x=2&y=",
             "client": ("127.0.0.1", 5555),
             "headers": [(b"host", b"localhost:9000"), (b"cookie", b"s=1; t=2"),
                         (b"content-type", b"application/octet-stream"), (b"x-m", b"1"),
                         (b"x-m", b"2")]}
    document = json.loads(event(Request(scope, None), b"\xff\x00", "rid"))  # type: ignore[arg-type]
    assert document["version"] == "2.0" and document["rawPath"] == "/a b"
    assert document["rawQueryString"] == "x=1&x=2&y="
    assert document["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert document["cookies"] == ["s=1", "t=2"]
    assert document["headers"]["x-m"] == "1,2" and "cookie" not in document["headers"]
    assert document["isBase64Encoded"] is True
    assert base64.b64decode(document["body"]) == b"\xff\x00"
    assert document["requestContext"]["http"]["method"] == "PUT"
    assert document["requestContext"]["requestId"] == "rid"


def test_an_early_answer_ends_the_stream_and_closes_the_generator(
        caplog: pytest.LogCaptureFixture) -> None:
    # The Runtime API may answer (a 413) and close before the body ends: the worker reads that
    # answer, stops streaming, and the generator's `finally` runs.
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # read and drop, then close while the sender still sends
                break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    closed: list[bool] = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 1_000_000
        finally:
            closed.append(True)

    api = RuntimeAPI(f"127.0.0.1:{listener.getsockname()[1]}")
    with caplog.at_level("ERROR", logger="forkric"):
        streaming.send(api, "rid-3", StreamingResponse(endless()), None, Logs({}))
    thread.join(10)
    assert closed == [True]
    assert api.conn.sock is None  # closed after the stream, as the Runtime API asks
    # Logged either way: the 413 when it could still be read, else the cut connection (a reset
    # may drop the answer from the receive queue, depending on timing).
    assert ("the streamed response to rid-3 is over the limit" in caplog.text
            or "the streamed response to rid-3 was cut" in caplog.text)


def test_a_reader_waiting_for_a_chunk_is_let_go_when_its_caller_leaves() -> None:
    """abandon() dropped the queue but did not wake the reader: the task of a caller that had
    left waited for the worker's next chunk or the stream's end (up to the timeout)."""
    async def scenario() -> list[bytes]:
        stream = Stream("application/octet-stream")
        read: list[bytes] = []

        async def reader() -> None:
            async for chunk in stream.chunks():
                read.append(chunk)

        task = asyncio.ensure_future(reader())
        await stream.put(b"one")
        await asyncio.sleep(0.01)  # read, and waiting for the next
        stream.abandon()
        await asyncio.wait_for(task, 2)
        return read

    assert asyncio.run(scenario()) == [b"one"]


@pytest.mark.parametrize(("message", "frames"), [("m" * 20000, 3), ("short", 500),
                                                 ("\u00e9" * 5000, 0)])
def test_a_long_error_fits_the_trailers(message: str, frames: int) -> None:
    """Go's net/http reads trailers within a 4 KiB buffer: a 20 KB message ended the RIE's
    runtime (502, "Runtime exited with error: exit status 1"). The whole error is logged; the
    trailer keeps its type, and the message (or the stack) is cut to fit."""
    error = errors.body(message, "ValueError", [f"  File x.py, line {i}" for i in range(frames)],
                        "rid-1")
    trailers = streaming.error_trailers(error)
    section = "".join(f"{name}: {value}\r\n" for name, value in trailers.items()) + "\r\n"
    assert len(section.encode()) < 4096
    sent = json.loads(base64.b64decode(trailers[streaming.ERROR_BODY_HEADER]))
    assert sent["errorType"] == "ValueError" and sent["requestId"] == "rid-1"
    assert message.startswith(sent["errorMessage"]) and sent["errorMessage"]
    small = errors.body("short", "ValueError", ["  File x.py, line 1"], "rid-1")
    assert json.loads(base64.b64decode(
        streaming.error_trailers(small)[streaming.ERROR_BODY_HEADER])) == small
