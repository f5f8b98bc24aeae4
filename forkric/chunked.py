"""A request with a chunked body (RFC 9112, section 7.1) on a Runtime API `Connection`: each
chunk is written as it is given, then the trailers. Lambda's streamed responses take this shape.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from forkric.connection import _JOIN_LIMIT, Connection, _StatusReader


def post(conn: Connection, path: str, headers: dict[str, str], chunks: Iterable[bytes],
         trailers: Callable[[], dict[str, str]]) -> int:
    """POST `chunks` (each non-empty: a zero-size chunk ends the body) and then the trailers
    `trailers()` gives once the chunks are done; return the status. The connection is closed
    after, whatever happens. When the peer answered early and stopped reading (a 413), that
    answer is returned; otherwise a broken connection raises OSError."""
    head = f"POST {path} HTTP/1.1\r\n{conn.fixed}"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += "Transfer-Encoding: chunked\r\n\r\n"
    try:
        sock = conn._socket()
        try:
            sock.sendall(head.encode())
            for chunk in chunks:
                size = b"%x\r\n" % len(chunk)
                if len(chunk) > _JOIN_LIMIT:  # no copy of a large chunk
                    sock.sendall(size)
                    sock.sendall(chunk)
                    sock.sendall(b"\r\n")
                else:
                    sock.sendall(size + chunk + b"\r\n")
            tail = "".join(f"{name}: {value}\r\n" for name, value in trailers().items())
            sock.sendall(f"0\r\n{tail}\r\n".encode())
        except OSError:
            early = _early_answer(conn, sock)
            if early is None:
                raise
            return early
        return conn._read(sock, _StatusReader()).status
    finally:
        conn.close()


def _early_answer(conn: Connection, sock: socket.socket) -> int | None:
    """The status the peer answered before it stopped reading, if it did."""
    try:
        sock.settimeout(1.0)
        return conn._read(sock, _StatusReader()).status
    except (OSError, ConnectionError):
        return None
