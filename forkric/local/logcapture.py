"""The runtime's output, echoed to the console and attributed to invocations for `Tail`.

Each worker's stdout and stderr are their own Unix socket connections: the supervisor already
does that when `_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET` names a socket (Lambda Managed Instances),
so the lines of concurrent workers never mix. The peer's pid (SO_PEERCRED) names the worker. Each
line is kept, with when it arrived, in its worker's bounded buffer. Only an invocation that asks
for its tail looks its lines up: the scoreboard says which worker holds it, that worker's sockets
are drained (it wrote its lines before it posted the result), and its lines are those that
arrived since the invocation was handed out. Nothing is done per invocation otherwise: that
lookup used to cost every invocation two syscalls and a scoreboard read. The supervisor's own
output (and a worker's before it connects) comes through a pipe and is only echoed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from forkric.scoreboard import Scoreboard

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
MAX_KEPT = 64 * 1024  # per worker: more is dropped from the front
# CloudWatch Logs' largest event (256 KiB less its 26 bytes of overhead): Lambda's log path
# splits a longer line into events of this size, and so does the capture.
LINE_CAP = 256 * 1024 - 26
DEAD_KEPT_S = 5.0  # how long the lines of a dead worker wait for the report of its invocation


@dataclass
class _Stream:
    sock: socket.socket
    pid: int
    partial: bytearray = field(default_factory=bytearray)  # a line's start, under LINE_CAP
    closed: bool = False


@dataclass
class _Worker:
    lines: deque[tuple[float, str]] = field(default_factory=deque)  # (arrival, text)
    size: int = 0
    streams: list[_Stream] = field(default_factory=list)
    index: int = -1  # its scoreboard slot, once known
    ended: float = 0.0  # when its last stream closed (monotonic)


class LogCapture:
    def __init__(self, path: str, board: Callable[[], Scoreboard | None],
                 echo: TextIO | None = None,
                 on_line: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.board = board
        self.echo = echo or sys.stdout
        self.on_line = on_line  # instead of echo: the console, which sums up repeated errors
        self.workers: dict[int, _Worker] = {}
        self.listener: socket.socket | None = None
        self.dead_kept_s = DEAD_KEPT_S

    def start(self) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(256)
        self.listener.setblocking(False)
        asyncio.get_running_loop().add_reader(self.listener.fileno(), self._accept)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for pid in list(self.workers):
            for stream in self.workers[pid].streams:
                self._close(stream, loop)
        self.workers.clear()
        if self.listener is not None:
            loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            pid = _peer_pid(conn)
            stream = _Stream(conn, pid)
            worker = self.workers.get(pid)
            if worker is None or worker.ended:  # a new process, perhaps with a dead one's pid
                worker = self.workers[pid] = _Worker()
            worker.streams.append(stream)
            asyncio.get_running_loop().add_reader(conn.fileno(), self._read, stream)

    def _read(self, stream: _Stream) -> None:
        while not stream.closed:
            try:
                data = stream.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(stream, asyncio.get_running_loop())
                return
            self._feed(stream, data)

    def _close(self, stream: _Stream, loop: asyncio.AbstractEventLoop) -> None:
        if stream.closed:
            return
        stream.closed = True
        loop.remove_reader(stream.sock.fileno())
        stream.sock.close()
        if stream.partial:
            self._line(stream.pid, bytes(stream.partial))
            stream.partial.clear()
        worker = self.workers.get(stream.pid)
        if worker is not None and all(s.closed for s in worker.streams):
            worker.ended = time.monotonic()
            if worker.lines:  # they may yet be claimed by the report of its invocation
                loop.call_later(self.dead_kept_s, self._forget, stream.pid, worker)
            else:
                del self.workers[stream.pid]

    def _forget(self, pid: int, worker: _Worker) -> None:
        if self.workers.get(pid) is worker:
            del self.workers[pid]

    def _feed(self, stream: _Stream, data: bytes) -> None:
        """Lines out of what arrived, in time linear in it: only the new bytes are searched, and
        a line's start is kept in a buffer that grows in place and never past LINE_CAP (joining
        the partial line to each read was quadratic: a 40 MB line took 10.6 s of CPU)."""
        buffer = stream.partial
        start, scan = 0, len(buffer)
        buffer += data
        while (end := buffer.find(b"\n", scan)) >= 0:
            self._emit(stream.pid, buffer, start, end, whole=True)
            start = scan = end + 1
        start = self._emit(stream.pid, buffer, start, len(buffer), whole=False)
        del buffer[:start]

    def _emit(self, pid: int, buffer: bytearray, start: int, end: int, whole: bool) -> int:
        """Lines of at most LINE_CAP bytes out of buffer[start:end], each cut between UTF-8
        characters; the last piece too when `whole` (a complete line), else it stays. Returns
        where what stays begins."""
        while end - start > LINE_CAP:
            cut = _boundary(buffer, start + LINE_CAP)
            self._line(pid, bytes(buffer[start:cut]))
            start = cut
        if whole:
            self._line(pid, bytes(buffer[start:end]))
            return end
        return start

    def _line(self, pid: int, raw: bytes) -> None:
        # The runtime joins a multi-line error record with CR so that it stays one event.
        text = raw.decode("utf-8", "replace").replace("\r", "\n")
        self.echo_line(text)
        worker = self.workers.setdefault(pid, _Worker())
        worker.lines.append((time.monotonic(), text))
        worker.size += len(text) + 1
        while worker.size > MAX_KEPT and len(worker.lines) > 1:
            worker.size -= len(worker.lines.popleft()[1]) + 1

    def echo_line(self, text: str) -> None:
        if self.on_line is not None:
            self.on_line(text)
            return
        try:
            self.echo.write(text + "\n")
            self.echo.flush()
        except (OSError, ValueError):
            pass  # a closed console must not stop the service

    def lines_since(self, request_id: str, since: float) -> list[str]:
        """The lines of an invocation handed out at `since` (monotonic) that is ending now."""
        pid = self._holder(request_id)
        if pid is None:
            pid = self._dead_holder(since)
        if pid is None:
            return []
        worker = self.workers[pid]
        for stream in worker.streams:
            self._read(stream)
        return [text for arrived, text in worker.lines if arrived >= since]

    def _holder(self, request_id: str) -> int | None:
        board = self.board()
        if board is None:
            return None
        wanted = request_id.encode("ascii", "replace")
        for pid, worker in self.workers.items():
            if worker.ended:  # a dead worker holds nothing: see _dead_holder
                continue
            # One read of the slot this worker had last time; a search only when it moved.
            held = board.holder(worker.index) if 0 <= worker.index < board.capacity else None
            if held is None or held[0] != pid:
                worker.index = _find_slot(board, pid)
                if worker.index < 0:
                    continue
                held = board.holder(worker.index)
            _, busy, held_id = held
            if busy and held_id.rstrip(b"\0") == wanted:
                return pid
        return None

    def _dead_holder(self, since: float) -> int | None:
        # A worker that died mid-invocation: its slot is cleared, but its streams are at their end
        # (the supervisor reports the death only after reaping it), and it is the only worker
        # that died since the invocation was handed out.
        for worker in list(self.workers.values()):
            for stream in worker.streams:
                self._read(stream)  # an end not yet seen by the loop
        dead = [pid for pid, w in self.workers.items() if w.ended >= since and w.lines]
        return dead[0] if len(dead) == 1 else None


def _boundary(buffer: bytearray, cut: int) -> int:
    """`cut`, moved back to the start of the UTF-8 character it falls in (at most 3 bytes)."""
    for back in range(4):
        if buffer[cut - back] & 0xC0 != 0x80:
            return cut - back
    return cut  # not UTF-8 there: cut where the cap falls


def _find_slot(board: Scoreboard, pid: int) -> int:
    return next((i for i in range(board.capacity) if board.holder(i)[0] == pid), -1)


def _peer_pid(conn: socket.socket) -> int:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        return int(_PEERCRED.unpack(creds)[0])
    except (AttributeError, OSError):
        return 0  # not Linux: all workers share one stream of lines
