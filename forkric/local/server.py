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
import math
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from forkric.local.asgi import PEER, App, Peer

# uvicorn refuses to write DEL in a header value; the Runtime API must carry it (a client
# context may hold it, and Lambda's and the RIE's Go servers send it). Other control characters
# never reach uvicorn: the service's values pass through `asgi.safe`.
httptools_impl.HEADER_VALUE_RE = re.compile(b"[\x00-\x08\x0a-\x1f]")

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
        if pending:
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through `_GatheredWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.gathered = _GatheredWrites(transport, asyncio.get_running_loop())
        self.peer = Peer()
        super().connection_made(cast(asyncio.Transport, self.gathered))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, Any], self.scope)[PEER] = self.peer

    def eof_received(self) -> None:
        # The caller half-closed: the event loop closes the transport when this returns, and
        # drops what is written after, so an answer already written leaves now.
        self.gathered.flush()
        super().eof_received()


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


def serve(app: App, sock: socket.socket, keep_alive_s: float = KEEP_ALIVE_S) -> Listening:
    """Serve `app` on `sock` from now on (callers queue in the backlog until uvicorn accepts);
    an idle connection is closed after `keep_alive_s`."""
    config = uvicorn.Config(
        app, http=_Protocol, ws="none", lifespan="off", interface="asgi3",
        log_config=None, access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=math.ceil(keep_alive_s), timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    return Listening(server, task, sock)
