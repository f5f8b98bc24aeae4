"""forkric local's servers: the writes of one turn of the event loop leave as one send.

How many segments cross loopback cannot be observed reliably from a test (a reader that is
slower than the writer sees one either way), so a recording transport stands in for uvloop's
here; tests/integration/test_local.py serves real traffic through the same class.
"""

from __future__ import annotations

import asyncio

import pytest

from forkric.local.server import _GatheredWrites, bind


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
