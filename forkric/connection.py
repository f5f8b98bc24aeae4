"""One kept-alive HTTP/1.1 connection to the Runtime API: requests go out as one `sendall`,
responses are parsed by httptools (llhttp, the parser behind uvicorn).

Why not `http.client`: measured under the RIE, its request building and its email-based header
parsing cost about 280 us of the 560 us a forkric invocation took, twice awslambdaric's native
client; this connection brings the whole invocation under awslambdaric's (see the README).
"""

from __future__ import annotations

import os
import select
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

# Bodies up to this size are sent in the same buffer as the head: one syscall per request.
_JOIN_LIMIT = 64 * 1024
# struct linger {l_onoff = 1, l_linger = 0}: close() resets the connection (RST, no FIN).
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass
class Response:
    """A whole response: status, headers by lower-case name (only when asked for), body."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _text(raw: bytes) -> str:
    # Lambda sends header values as UTF-8 (a client context with non-ASCII text).
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class Interrupt:
    """A way to abandon a request while no byte of its answer has arrived (the worker's stop).

    `fd` becomes readable when something may want the wait to end (the wakeup fd a signal writes
    to); `leave` is then asked, and True abandons the request with `Interrupted`. Once a byte of
    the answer is in, the request runs to its end whatever `leave` would say.
    """

    fd: int
    leave: Callable[[], bool]


# Told a response's status and headers once its head is read (the body may still be arriving).
Head = Callable[[int, dict[str, str]], None]


class Interrupted(Exception):
    """The request was abandoned before any byte of its answer arrived; the connection is reset
    (RST), so the Runtime API can tell an answer written to it was never read (a FIN would
    look like a worker that read its invocation and then died)."""


class _StatusReader:
    """httptools callbacks collecting a response's status and body: the answers to posts, whose
    headers nobody reads (httptools calls on_header only where the method exists)."""

    __slots__ = ("body", "done", "headers", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)
        # Header values as Lambda's Runtime API (Go's net/http) writes them: a client context
        # may hold DEL, which llhttp refuses by default, and awslambdaric (curl) takes.
        self.parser.set_dangerous_leniencies(lenient_headers=True)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # Asked here: once the message is complete the parser has forgotten it.
        self.keep_alive = self.parser.should_keep_alive()
        self.done = True


class _Reader(_StatusReader):
    """... and its headers, by lower-case name; `on_head(status, headers)`, when given, is
    called as soon as the head is read, before the body."""

    __slots__ = ("on_head",)

    def __init__(self, on_head: Head | None = None) -> None:
        super().__init__()
        self.on_head = on_head

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower().decode("latin-1")] = _text(value)

    def on_headers_complete(self) -> None:
        if self.on_head is not None:
            self.on_head(self.parser.get_status_code(), self.headers)


class Connection:
    """One HTTP/1.1 connection, opened on first use and again after any failure.

    `timeout` (seconds) bounds the connect and every read and write; None waits for ever, as the
    long poll of /next must.
    """

    def __init__(self, host: str, port: int, user_agent: str,
                 timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.fixed = f"Host: {host}:{port}\r\nUser-Agent: {user_agent}\r\n"
        self.sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._polled = (-1, -1)  # the (socket, interrupt) descriptors the poller watches

    def close(self) -> None:
        """Close the socket, if open; the next request opens another."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _socket(self) -> socket.socket:
        if self.sock is None:
            # No timeout for workers: /next blocks until an invocation arrives, however long.
            sock = socket.create_connection((self.host, self.port), self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        return self.sock

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, read_headers: bool = True,
                interrupt: Interrupt | None = None, on_head: Head | None = None) -> Response:
        """Send one request and read its whole response; on any failure (OSError, ConnectionError
        for a bad response, Interrupted) the socket is closed and the error raised. `on_head`
        (with `read_headers`) is told the head as soon as it is read."""
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed}"
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("utf-8")
        try:
            sock = self._socket()
            if body and len(body) > _JOIN_LIMIT:
                sock.sendall(data)
                sock.sendall(body)
            else:
                sock.sendall(data + body if body else data)
            if interrupt is not None:
                self._await_answer(sock, interrupt)
            return self._read(sock, _Reader(on_head) if read_headers else _StatusReader())
        except BaseException:
            self.close()
            raise

    def _await_answer(self, sock: socket.socket, interrupt: Interrupt) -> None:
        """Wait until the answer's first byte is readable; raise Interrupted if `leave` says so
        first. A signal's wakeup byte in `interrupt.fd` ends each wait: nothing can slip between
        a check of `leave` and the wait (a signal handler that raised could land after the answer
        arrived, and lose the invocation it carried). The poll object lives as long as the
        socket: made once, not per request."""
        key = (sock.fileno(), interrupt.fd)
        if self._poller is None or self._polled != key:
            self._poller = select.poll()
            self._poller.register(key[0], select.POLLIN)
            self._poller.register(key[1], select.POLLIN)
            self._polled = key
        while True:
            for fd, _ in self._poller.poll():
                if fd == key[0]:
                    return
            _drain(interrupt.fd)
            if interrupt.leave():
                # A last look, then the socket closed at once: an answer written in between
                # would be lost with the connection (the long poll cannot be cancelled
                # atomically), so the two are kept a syscall apart.
                if any(fd == key[0] for fd, _ in self._poller.poll(0)):
                    return
                # Reset, not closed: an invocation the Runtime API wrote in that syscall's gap
                # (or after) is then known unread, and forkric local hands it to another worker.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
                self.close()
                raise Interrupted("left before the answer began")

    def _read(self, sock: socket.socket, reader: _StatusReader) -> Response:
        parser = reader.parser
        while not reader.done:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the Runtime API closed the connection")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                raise ConnectionError(f"bad HTTP response from the Runtime API: {exc}") from None
        if not reader.keep_alive:
            self.close()
        return Response(parser.get_status_code(), reader.headers, b"".join(reader.body))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
