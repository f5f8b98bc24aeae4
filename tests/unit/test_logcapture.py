"""forkric local's log capture on real Unix sockets: dead workers must not pile up."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from pathlib import Path

import pytest

from forkric.local.logcapture import LINE_CAP, LogCapture, _Stream


@pytest.mark.parametrize("unread", [False, True])
def test_a_dead_worker_is_kept_only_while_its_lines_may_be_claimed(tmp_path: Path,
                                                                   unread: bool) -> None:
    """Every dead worker left behind used to cost a scoreboard search on every invocation."""

    async def scenario() -> tuple[int, int]:
        echo = io.StringIO()
        capture = LogCapture(str(tmp_path / "log.sock"), lambda: None, echo)
        capture.start()
        loop = asyncio.get_running_loop()
        streams = []
        for _ in range(2):  # a worker's stdout and stderr
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await loop.sock_connect(conn, capture.path)
            streams.append(conn)
        while not capture.workers:
            await asyncio.sleep(0.01)
        if unread:
            streams[0].sendall(b"printed\n")
            while not echo.getvalue():
                await asyncio.sleep(0.01)
        while_alive = len(capture.workers)
        for conn in streams:
            conn.close()
        while any(not s.closed for w in capture.workers.values() for s in w.streams):
            await asyncio.sleep(0.01)
        left = len(capture.workers)
        capture.close()
        return while_alive, left

    while_alive, left = asyncio.run(scenario())
    assert while_alive == 1
    # With unread lines it waits for the report of its invocation; otherwise it is gone at once.
    assert left == (1 if unread else 0)


def test_the_lines_of_an_invocation_are_those_since_it_was_handed_out(tmp_path: Path) -> None:
    """No scoreboard here (none is mapped): the lines of a worker that died are still claimed,
    and only those that arrived after the invocation started."""

    async def scenario() -> tuple[list[str], list[str], int]:
        loop = asyncio.get_running_loop()
        capture = LogCapture(str(tmp_path / "log.sock"), lambda: None, io.StringIO())
        capture.dead_kept_s = 0.2
        capture.start()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await loop.sock_connect(conn, capture.path)
        conn.sendall(b"before\n")
        while not any(w.lines for w in capture.workers.values()):
            await asyncio.sleep(0.01)
        since = time.monotonic()
        conn.sendall(b"during 1\nduring 2\nunfinished")
        conn.close()  # it dies: its slot is empty, its lines are its invocation's
        lines = capture.lines_since("any-id", since)
        older = capture.lines_since("any-id", since + 3600)  # it died before that one began
        while capture.workers:  # forgotten once nobody can claim its lines any more
            await asyncio.sleep(0.01)
        capture.close()
        return lines, older, len(capture.workers)

    lines, older, left = asyncio.run(scenario())
    assert lines == ["during 1", "during 2", "unfinished"]
    assert older == []
    assert left == 0


def _fed(chunks: list[bytes]) -> tuple[list[str], int]:
    """The lines a worker's stream gives for `chunks`, and the most its partial line held."""
    echo = io.StringIO()
    capture = LogCapture("unused.sock", lambda: None, echo)
    stream = _Stream(socket.socket(socket.AF_UNIX), pid=1)
    most = 0
    try:
        for chunk in chunks:
            capture._feed(stream, chunk)
            most = max(most, len(stream.partial))
    finally:
        stream.sock.close()
    return echo.getvalue().split("\n")[:-1], most  # every line is echoed


def test_a_long_line_is_split_at_the_cap_and_nothing_is_lost() -> None:
    """A 40 MB line used to cost 10.6 s of the service's CPU: the partial line was joined to
    each read and split again. Now it never holds more than a cap's worth (so each read costs
    what it brought), and the line leaves in pieces of at most LINE_CAP bytes, as Lambda
    splits a line over CloudWatch's event size."""
    line = bytes(range(33, 127)) * 30_000  # 2.8 MB, no newline until the end
    chunks = [line[i:i + 65536] for i in range(0, len(line), 65536)] + [b"\nnext\n"]
    lines, most = _fed(chunks)
    assert most <= LINE_CAP
    assert lines[-1] == "next"
    pieces = lines[:-1]
    assert len(pieces) == -(-len(line) // LINE_CAP)
    assert all(len(piece) == LINE_CAP for piece in pieces[:-1])
    assert "".join(pieces).encode() == line


def test_pieces_are_cut_between_utf8_characters() -> None:
    line = "é€😀".encode() * 100_000  # 900 kB of 2-, 3- and 4-byte characters
    lines, _ = _fed([line[i:i + 1000] for i in range(0, len(line), 1000)] + [b"\n"])
    assert len(lines) > 3
    assert all("\ufffd" not in piece and len(piece.encode()) <= LINE_CAP for piece in lines)
    assert "".join(lines).encode() == line


def test_a_line_of_exactly_the_cap_is_one_line() -> None:
    lines, _ = _fed([b"x" * LINE_CAP, b"\n", b"a\nb"])
    assert lines == ["x" * LINE_CAP, "a"]
