"""The invocations: a FIFO queue of waiting ones, the long-polling workers, the running ones.

One event loop owns all of it, so no locks. An invocation's deadline starts when a worker takes
it (as on Lambda, where the timeout counts from the start of the invoke, not from a queue).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from forkric.local import answers
from forkric.local.answers import Result
from forkric.local.streams import Stream


def request_id() -> str:
    """A random (version 4) UUID as text, as `str(uuid.uuid4())` writes it, in half its time
    (measured: 2.0 against 4.2 us; one is made per invocation)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass
class Invocation:
    function_name: str
    payload: bytes
    client_context: bytes | None = None  # the JSON as the caller sent it
    trace_id: str | None = None
    tenant_id: str | None = None  # X-Amz-Tenant-Id: tenant isolation
    tail: bool = False
    event: bool = False  # X-Amz-Invocation-Type: Event: nobody waits for the result
    request_id: str = field(default_factory=request_id)
    deadline_ms: int = 0
    started: float = 0.0
    done: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop()
                                         .create_future())
    timer: asyncio.TimerHandle | None = None
    log: str = ""  # the invocation's log lines, filled in when it finishes
    peer: object = None  # the connection it was handed out on (asgi.Peer)
    stream: Stream | None = None  # its response, while the worker streams it
    handouts: int = 0  # times given back after a worker's connection reset unread

    @property
    def arn(self) -> str:
        # The Invoke API takes a name, a name:qualifier, or an ARN; the context gets an ARN.
        if self.function_name.startswith("arn:"):
            return self.function_name
        return f"arn:aws:lambda:us-east-1:012345678912:function:{self.function_name}"


@dataclass
class Counts:
    accepted: int = 0
    rejected: int = 0
    succeeded: int = 0
    function_errors: int = 0
    timeouts: int = 0


class Invocations:
    def __init__(self, timeout_s: float, max_queue: int) -> None:
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.pending: deque[Invocation] = deque()
        self.pollers: deque[asyncio.Future[Invocation]] = deque()
        self.running: dict[str, Invocation] = {}
        self.counts = Counts()
        # Called with the invocation when it ends, before its invoker hears: log collection.
        self.on_finish: Callable[[Invocation, Result], None] = lambda inv, result: None
        self.on_submit: Callable[[], None] = lambda: None

    def submit(self, invocation: Invocation) -> bool:
        """Queue an invocation, or hand it to a waiting worker; False when the queue is full."""
        if len(self.pending) >= self.max_queue and not self._live_poller():
            self.counts.rejected += 1
            return False
        self.counts.accepted += 1
        self.pending.append(invocation)
        self._hand_out()
        self.on_submit()
        return True

    def _live_poller(self) -> bool:
        return any(not poller.done() for poller in self.pollers)

    def _hand_out(self) -> None:
        while self.pending and self.pollers:
            poller = self.pollers.popleft()
            if not poller.done():
                poller.set_result(self.pending.popleft())

    def take(self) -> Invocation | None:
        """The oldest waiting invocation, now running, if there is one."""
        return self._start(self.pending.popleft()) if self.pending else None

    async def next(self) -> Invocation:
        """A worker's long poll: the oldest waiting invocation, now running."""
        if self.pending:
            return self._start(self.pending.popleft())
        poller: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        self.pollers.append(poller)
        try:
            invocation = await poller
        except asyncio.CancelledError:
            # The worker went away; an invocation handed to it in the meantime goes back first.
            if poller.done() and not poller.cancelled():
                self.pending.appendleft(poller.result())
                self._hand_out()
            elif poller in self.pollers:
                self.pollers.remove(poller)  # not left to pile up until the next hand-out
            raise
        return self._start(invocation)

    def give_back(self, invocation: Invocation) -> None:
        """The worker's connection broke before it got the invocation: first in line again."""
        if self.running.pop(invocation.request_id, None) is not None and invocation.timer:
            invocation.timer.cancel()
        invocation.peer = None  # held by no connection until it is written to the next one
        self.pending.appendleft(invocation)
        self._hand_out()

    def _start(self, invocation: Invocation) -> Invocation:
        invocation.started = time.monotonic()
        invocation.deadline_ms = int(time.time() * 1000 + self.timeout_s * 1000)
        self.running[invocation.request_id] = invocation
        invocation.timer = asyncio.get_running_loop().call_later(
            self.timeout_s, self._time_out, invocation)
        return invocation

    def _time_out(self, invocation: Invocation) -> None:
        if self.running.get(invocation.request_id) is invocation:
            self.counts.timeouts += 1
            self.finish(invocation.request_id, answers.timed_out(self.timeout_s))

    def begin_stream(self, invocation: Invocation, stream: Stream) -> None:
        """The worker started streaming: the invoker is answered with the stream now; the
        invocation runs on (its timeout too) until `finish` gives the stream its end."""
        invocation.stream = stream
        if invocation.event:  # nobody waits for an Event invocation's answer: none is kept
            stream.abandon()
        if not invocation.done.done():
            invocation.done.set_result(Result(200, content_type=stream.content_type,
                                              stream=stream))

    def finish(self, request_id: str, result: Result) -> bool:
        """End a running invocation with its result; False when it is unknown or already over.
        A streamed one ends its stream with the result (an error, a timeout, or success)."""
        invocation = self.running.pop(request_id, None)
        if invocation is None:
            return False
        if invocation.timer is not None:
            invocation.timer.cancel()
        if result.status == 200 and not result.function_error:
            self.counts.succeeded += 1
        elif result.function_error:  # timeouts included, as Lambda counts them
            self.counts.function_errors += 1
        try:
            self.on_finish(invocation, result)
        finally:  # whatever the bookkeeping does, the invoker gets its answer
            if invocation.stream is not None:
                invocation.stream.end(result)
            elif not invocation.done.done():
                invocation.done.set_result(result)
        return True

    def fail_pending(self, result: Callable[[Invocation], Result]) -> int:
        """Answer every waiting invocation at once (an init error, a stop)."""
        failed = 0
        while self.pending:
            invocation = self.pending.popleft()
            if not invocation.done.done():
                invocation.done.set_result(result(invocation))
            failed += 1
        return failed

    def fail_running(self, result: Callable[[Invocation], Result]) -> None:
        """Answer every running invocation (their runtime died as a whole)."""
        for request_id, invocation in list(self.running.items()):
            self.finish(request_id, result(invocation))

    def is_running(self, request_id: str) -> bool:
        return request_id in self.running

    def get(self, request_id: str) -> Invocation | None:
        return self.running.get(request_id)
