"""forkric local's servers: the writes of one turn of the event loop leave as one send.

How many segments cross loopback cannot be observed reliably from a test (a reader that is
slower than the writer sees one either way), so a recording transport stands in for uvloop's
here; tests/integration/test_local.py serves real traffic through the same class.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

import pytest
import uvicorn

from forkric.local.server import Limits, _GatheredWrites, _Protocol, bind


class Recording:
    def __init__(self) -> None:
        self.sends: list[list[bytes]] = []
        self.closed = self.aborted = False

    def writelines(self, data: list[bytes]) -> None:
        self.sends.append(list(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_an_answers_head_and_body_leave_together() -> None:
    async def scenario() -> tuple[list[list[bytes]], list[list[bytes]]]:
        recording = Recording()
        gathered = _GatheredWrites(recording, asyncio.get_running_loop())  # type: ignore[arg-type]
        gathered.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        gathered.write(b"{}")
        before = list(recording.sends)  # nothing sent within the turn
        await asyncio.sleep(0)
        return before, recording.sends

    before, after = asyncio.run(scenario())
    assert before == []
    assert after == [[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"]]


def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    async def scenario() -> tuple[Recording, Recording, str]:
        loop = asyncio.get_running_loop()
        closed, aborted = Recording(), Recording()
        first = _GatheredWrites(closed, loop)  # type: ignore[arg-type]
        first.write(b"last words")
        first.close()
        second = _GatheredWrites(aborted, loop)  # type: ignore[arg-type]
        second.write(b"never sent")
        second.abort()
        await asyncio.sleep(0)  # the flushes scheduled by the writes find nothing left
        return closed, aborted, str(first.get_extra_info("peername"))

    closed, aborted, info = asyncio.run(scenario())
    assert closed.sends == [[b"last words"]] and closed.closed
    assert aborted.sends == [] and aborted.aborted
    assert info == "info:peername"  # everything else is the transport's own


def test_bind_takes_a_free_port_and_refuses_a_taken_one() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(OSError):
            bind("127.0.0.1", port)
    finally:
        sock.close()


def _timed_server(head_timeout_s: float) -> tuple[uvicorn.Server, socket.socket]:
    """A uvicorn server with forkric local's protocol, a short head timeout, and an app that
    answers /poll after 4 head timeouts (a worker's long poll) and anything else at once."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/poll":
            await asyncio.sleep(4 * head_timeout_s)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    protocol = functools.partial(_Protocol, limits=Limits(16, head_timeout_s=head_timeout_s))
    config = uvicorn.Config(app, http=protocol, ws="none", lifespan="off",  # type: ignore[arg-type]
                            log_config=None, access_log=False)
    return uvicorn.Server(config), bind("127.0.0.1", 0)


def test_the_head_timer_spares_a_request_already_read_and_an_idle_connection() -> None:
    """A request read whole in one read used to re-arm the head timer for the next head, so a
    worker's long poll of /next was answered 408 after 10 s (then retried with backoff, logged),
    and an idle kept-alive connection was sent 408 and closed. A head that stalls still is."""
    timeout_s = 0.2

    async def scenario() -> tuple[bytes, bytes, bytes]:
        server, sock = _timed_server(timeout_s)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        port = sock.getsockname()[1]
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")  # one read, then a long wait
            polled = await reader.readuntil(b"ok")
            await asyncio.sleep(2 * timeout_s)  # idle, kept alive
            writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            again = await reader.readuntil(b"ok")
            writer.write(b"GET /stalled HTTP/1.1\r\n")  # a head that never ends
            stalled = await asyncio.wait_for(reader.read(), 10 * timeout_s)
            writer.close()
            return polled, again, stalled
        finally:
            server.should_exit = True
            await task

    polled, again, stalled = asyncio.run(scenario())
    assert polled.startswith(b"HTTP/1.1 200"), polled
    assert again.startswith(b"HTTP/1.1 200"), again
    assert stalled.startswith(b"HTTP/1.1 408"), stalled


def test_a_caller_refused_in_a_flood_still_reads_its_answer() -> None:
    """Past MAX_LINGERING refused connections, a refused caller's connection was closed at once,
    before its request was read: the request then reset it, and the caller saw a broken pipe or
    a reset instead of the 503 (the slowloris test met it under load). Now the oldest refusal
    gives up its descriptor, and the newest is answered and read like the others."""
    from forkric.local.server import MAX_LINGERING

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await asyncio.sleep(60)  # the one connection served holds its place

        protocol = functools.partial(_Protocol, limits=Limits(1))
        config = uvicorn.Config(app, http=protocol, ws="none",  # type: ignore[arg-type]
                                lifespan="off", log_config=None, access_log=False)
        server, sock = uvicorn.Server(config), bind("127.0.0.1", 0)
        task = loop.create_task(server.serve(sockets=[sock]))
        port = sock.getsockname()[1]
        held = []
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            for _ in range(MAX_LINGERING + 2):  # the cap, then a flood of refusals that linger
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                held.append(writer)
                if len(held) > 1:
                    await reader.readuntil(b"\r\n\r\n")  # refused: its 503 has come
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\ncontent-length: 65536\r\n\r\n"
                         + b"x" * 65536)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer
        finally:
            for other in held:
                other.close()
            server.should_exit = True
            server.force_exit = True
            await task

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 503"), answer
