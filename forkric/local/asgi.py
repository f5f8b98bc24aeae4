"""The little of ASGI the service uses: a request's parts, its body within a limit, an answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


PEER = "forkric.peer"  # the scope's key for the connection's Peer (set by server._Protocol)


class Peer:
    """One connection's other end, as the service learnt it: the same object for every
    request on that connection (the Runtime API hands a request id to a connection)."""

    __slots__ = ("handed", "lost", "pid")

    def __init__(self) -> None:
        self.pid: int | None = None  # the runtime's process there, 0 for none; None: not asked
        # The invocation the last answer on this connection carried, until the connection's
        # next request shows the worker read that answer (a worker sends one request at a time).
        self.handed: object = None
        self.lost = False  # the connection is gone: nothing written to it is read


class Disconnected(Exception):
    """The client went away before its request was read."""


class Request:
    __slots__ = ("_headers", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self._headers: dict[bytes, bytes] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        """The path, percent-decoded, without the query."""
        return str(self.scope["path"])

    @property
    def peer(self) -> Peer:
        peer = self.scope.get(PEER)
        if peer is None:  # served by another server than server.py's: one Peer per request
            peer = self.scope[PEER] = Peer()
        return peer

    @property
    def query(self) -> str:
        return bytes(self.scope["query_string"]).decode("latin-1")

    def header(self, name: bytes, default: str | None = None) -> str | None:
        """A header's value by its lower-case name (the last one when repeated), without the
        blanks around it (RFC 9110: they are not part of the value; llhttp leaves a trailing
        one after a byte that is not ASCII, which the worker then saw in its trace id)."""
        if self._headers is None:
            self._headers = dict(self.scope["headers"])
        value = self._headers.get(name)
        return default if value is None else value.strip(b" \t").decode("utf-8",
                                                                         "surrogateescape")

    async def body(self, limit: int) -> tuple[bytes | None, int]:
        """The body, or None (and its size) when it is over `limit`; the rest is read and
        dropped, so that the connection stays usable."""
        kept: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                kept.append(chunk)
            if not message.get("more_body", False):
                break
        if size > limit:
            return None, size
        return (kept[0] if len(kept) == 1 else b"".join(kept)), size

    async def disconnected(self) -> None:
        """Wait until the client goes away (a long poll's body is empty: read past it)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass


async def respond(send: Send, status: int, body: bytes = b"", headers: Headers = ()) -> None:
    # No Content-Length on a 204 (RFC 9110); uvicorn sends none of its own.
    length = [] if status == 204 else [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status,
                "headers": [*length, *headers]})
    await send({"type": "http.response.body", "body": body})


# Control characters other than tab cannot be in a header value (CR and LF would end it): each
# becomes a space, as Go's net/http (behind the Lambda service and the RIE) writes header values.
# DEL stays, as they send it.
_CONTROLS = bytes.maketrans(bytes(range(0x20)), b"\t".rjust(0x0A, b" ").ljust(0x20, b" "))


def value(text: str) -> bytes:
    """A header value as bytes, for any text: the bytes it was read from, for text
    `Request.header` gave, else its UTF-8 (a lone surrogate as its three bytes); control
    characters as `safe` makes them. Never raises: one invocation's data cannot stop an answer."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no header byte stands for
        raw = text.encode("utf-8", "surrogatepass")
    return safe(raw)


def safe(raw: bytes) -> bytes:
    """`raw` with each control character but tab made a space: always a valid header value."""
    return raw.translate(_CONTROLS)


def encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value(text)) for name, text in headers.items()]
