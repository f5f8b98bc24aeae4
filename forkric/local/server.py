"""The service's two HTTP servers: uvicorn (its httptools protocol) serving an ASGI callable on a
socket bound here.

uvicorn, not aiohttp: measured side by side with the same load (16 kept-alive clients, a small
POST, a small answer), aiohttp's low-level server took 106-113 us of CPU per exchange and uvicorn
80-95 us; the service makes three exchanges per invocation.

uvicorn writes an answer's head and its body with two sends, so each answer crossed loopback as
two segments and each reader woke for both (strace: 6 writes per invocation). Its writes are
gathered here into one send per turn of the event loop (3 writes per invocation): that took the
CPU per invocation down for the service, the runtime's workers and the caller alike, and
`make bench`'s local ratio from 1.17x to 1.35x the RIE's (2026-11-27, same machine, same hour).

The sockets are bound here so that a taken port is a one-line error, and the signals stay the
service's own: it stops the runtime before its servers, so that busy workers can still post
their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import math
import re
import resource
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from forkric.local.asgi import PEER, App, Peer

# uvicorn refuses to write DEL in a header value; the Runtime API must carry it (a client
# context may hold it, and Lambda's and the RIE's Go servers send it). Other control characters
# never reach uvicorn: the service's values pass through `asgi.safe`.
httptools_impl.HEADER_VALUE_RE = re.compile(b"[\x00-\x08\x0a-\x1f]")

# Bounds on what a caller may cost. The largest header Lambda takes is X-Amz-Client-Context
# (3,583 bytes of JSON, 4,780 in base64), and API Gateway's headers total at most 10,240 bytes:
# 16 KiB holds any head Lambda would take, with room to spare.
HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0  # to send a request's head, from its first byte (or from connecting)
LINGER_S = 2.0  # how long a refused connection is read (and dropped) before it is closed
MAX_LINGERING = 32  # refused connections lingering at once, per server: past it, the oldest goes
RESERVED_FDS = 128  # for the runtime's sockets and pipes, files, the loop's own
KEEP_ALIVE_S = 75  # an idle caller's connection is kept this long (aiohttp's default)
SHUTDOWN_GRACE_S = 5


class _GatheredWrites:
    """A transport whose writes within one turn of the event loop leave as one send (writev)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        # A caller that left (it pipelined requests and closed) is written nothing: writing
        # to its closed transport raised, one logged traceback per such caller.
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


@dataclass
class Limits:
    """What one server's connections may cost: bounds uvicorn's httptools protocol does not
    set, and how many refused connections linger now (shared by the server's connections)."""

    max_connections: int
    head_bytes: int = HEAD_LIMIT
    head_timeout_s: float = HEAD_TIMEOUT_S
    # Refused connections lingering now, oldest first (a dict: ordered, removal by key).
    lingering: dict[Any, None] = field(default_factory=dict)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through `_GatheredWrites`, with a bound on a
    request head's size (431) and on the time it takes to arrive (408), and a cap on open
    connections (503): without them one 100 MB header cost 10.7 s of CPU, and idle or
    half-sent connections were held until the fd limit refused everyone."""

    def __init__(self, *args: Any, limits: Limits,
                 on_reset: Callable[[object], None] = lambda handed: None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.on_reset = on_reset
        self.in_head = True  # the bytes that arrive belong to a request's head
        self.head_bytes = 0
        # A request's first byte came and its head's end did not: only then is a head timed.
        # (A request read whole leaves `in_head` set for the next one; timing it would answer
        # a long poll of /next, or an idle kept-alive connection, 408 after 10 s.)
        self.head_begun = False
        self.head_tail = b""  # the last bytes of a head still arriving (its end may straddle)
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False  # answered and closing: what still arrives is dropped
        self.lingers = False  # refused, and in limits.lingering until it is closed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.gathered = _GatheredWrites(transport, asyncio.get_running_loop())
        self.peer = Peer()
        self.sock = transport.get_extra_info("socket")
        self.unread = False  # something we wrote reached the other end after it closed
        super().connection_made(cast(asyncio.Transport, self.gathered))
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, f"forkric local: {self.limits.max_connections} connections are "
                              "open, the most it serves at once; try again when one closes")
            return
        self._arm_head_timer()  # a connection that never sends a head is not kept either

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head and self._head_over_limit(data):
            self._refuse(431, f"forkric local: a request head is limited to "
                              f"{self.limits.head_bytes} bytes")
            return
        super().data_received(data)
        if self.in_head and self.head_begun and self.head_timer is None:
            self._arm_head_timer()  # a head still arriving: timed from its first read

    def _head_over_limit(self, data: bytes) -> bool:
        """Count the bytes of `data` up to the end of the head it continues (all of it when the
        head goes on), before the parser reads them. (The body that came in the same read is
        not head: counting the whole read refused a 30 KB event with a 200-byte head.) A later
        head that begins in the same read is counted from the next read."""
        seen = self.head_tail + data
        end = seen.find(b"\r\n\r\n")
        self.head_bytes += len(data) if end < 0 else end + 4 - len(self.head_tail)
        self.head_tail = data[-3:] if end < 0 else b""
        return self.head_bytes > self.limits.head_bytes

    def on_message_begin(self) -> None:
        self.head_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.in_head = self.head_begun = False
        self.peer.handed = None  # a new request: the answer before it was read whole
        if self.head_timer is not None:
            self._cancel_head_timer()
        cast(dict[str, Any], self.scope)[PEER] = self.peer  # before the app sees the scope
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes = True, 0  # what comes next is the next request's head
        self.head_tail = b""

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_late(self) -> None:
        self.head_timer = None
        if self.in_head and not self.transport.is_closing():
            self._refuse(408, f"forkric local: a request head must arrive within "
                              f"{self.limits.head_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` and end the connection: our side at once, the rest
        once the caller ends its side or after a short linger. What the caller still sends is
        read and dropped meanwhile: closing with unread bytes would reset the connection, and
        the caller could lose the answer."""
        self._cancel_head_timer()
        self.in_head = False
        self.refused = True
        body = message.encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large",
                  503: b"Service Unavailable"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, reason, len(body), body))
        if len(self.limits.lingering) >= MAX_LINGERING:
            # A flood: the oldest refusal, whose answer has had the longest to arrive, gives up
            # its descriptor. (Closing this one at once, before its request is read, reset it.)
            oldest = next(iter(self.limits.lingering))
            oldest.stop_lingering()
            oldest.transport.close()
        self.limits.lingering[self] = None
        self.lingers = True
        self.gathered.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def stop_lingering(self) -> None:
        if self.lingers:
            self.lingers = False
            del self.limits.lingering[self]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_lingering()
        self._cancel_head_timer()
        super().connection_lost(exc)
        self.peer.lost = True
        # Reset (or gone before our write): the last answer was not read. A worker resets a
        # long poll it leaves, and a process that reads its answer whole and then dies ends
        # with a FIN (connection_lost(None)), so only an unread invocation comes here; as does
        # one written after the worker's FIN left (our read of the FIN hides the reset).
        if self.peer.handed is not None and (
                isinstance(exc, (ConnectionResetError, BrokenPipeError))
                or self._written_after_its_end()):
            handed, self.peer.handed = self.peer.handed, None
            self.on_reset(handed)

    def eof_received(self) -> None:
        # The caller half-closed: the event loop closes the transport when this returns, and
        # drops what is written after, so an answer already written leaves now.
        self.gathered.flush()
        self.peer.lost = True  # nothing written from now on is sent
        self._written_after_its_end()  # while the socket is open (uvloop closes it first)
        super().eof_received()
        if self.refused:
            self.transport.close()

    def _written_after_its_end(self) -> bool:
        """True once a write of ours reached the other end after its process closed it: the
        kernel answered it with a reset, which a read of the FIN before it does not show, and
        SO_ERROR does (EPIPE; read once, so kept)."""
        if not self.unread and self.peer.handed is not None:
            with contextlib.suppress(OSError, AttributeError):
                self.unread = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (
                    errno.EPIPE, errno.ECONNRESET)
        return self.unread


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service handles SIGINT and SIGTERM itself, in its own order


@dataclass
class Listening:
    server: uvicorn.Server
    task: asyncio.Task[None]
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on the first address `host` names; OSError when it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def connection_budget() -> int:
    """How many connections the service can hold: the file descriptor limit, raised to its
    hard limit first (as Go's runtime does; 1024 is a common default), less what the service
    and its runtime need besides."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = 65536 if soft == resource.RLIM_INFINITY else min(soft, 65536)
    return max(16, limit - RESERVED_FDS)


def serve(app: App, sock: socket.socket, max_connections: int,
          keep_alive_s: float = KEEP_ALIVE_S,
          on_reset: Callable[[object], None] = lambda handed: None) -> Listening:
    """Serve `app` on `sock` from now on (callers queue in the backlog until uvicorn accepts);
    an idle connection is closed after `keep_alive_s`; past `max_connections` open, a new one is
    answered 503 and closed. `on_reset(handed)` is called when a connection whose last answer
    carried `handed` (the app set `Peer.handed`) is reset before its next request."""
    protocol = functools.partial(_Protocol, limits=Limits(max_connections), on_reset=on_reset)
    config = uvicorn.Config(
        app, http=cast(type[asyncio.Protocol], protocol), ws="none", lifespan="off",
        interface="asgi3",
        log_config=None, access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=math.ceil(keep_alive_s), timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    return Listening(server, task, sock)
