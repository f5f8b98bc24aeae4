"""forkric local gives back an invocation handed to a long poll whose worker left (issue 11 row
6): here the worker's reset reaches the service in the same turn of the event loop as the
invocation it was handed, before the service wrote it. Real sockets on loopback and the real
server and Service; the runtime is a stand-in (no process runs here), since the order of the
two events can be set only from inside the service's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, cast

import pytest

from forkric.local import server
from forkric.local.asgi import PEER, Peer, Request
from forkric.local.invocations import Invocation, Invocations
from forkric.local.service import Reply, Service

NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _service(invocations: Invocations) -> Service:
    # The runtime's process: the test itself holds the worker's end of the connection.
    runtime = SimpleNamespace(ready=True, initialised=False, pid=0, want=lambda: None,
                              check_ready=lambda: None, process_of=lambda *ends: os.getpid(),
                              plan=SimpleNamespace(config=SimpleNamespace(snap_start=False)))
    capture = SimpleNamespace(echo_line=lambda line: None)
    return Service(invocations, runtime, capture)  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return condition()


async def _reset_as_handed() -> tuple[bool, bool]:
    """A worker polls, then resets its connection; the invocation arrives before the service
    has seen the reset. True, False: it is waiting again, not running on the gone connection."""
    invocations = Invocations(timeout_s=30, max_queue=10)
    service = _service(invocations)
    listening = server.serve(service.runtime_api, server.bind("127.0.0.1", 0), 10,
                             on_reset=service.unread)
    try:
        worker = socket.create_connection(("127.0.0.1", listening.port))
        worker.sendall(NEXT)
        assert await _until(lambda: len(invocations.pollers) == 1, 10), "the poll never came"
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        worker.close()  # the reset is in the kernel before the loop's next look at its sockets
        invocation = Invocation(function_name="f", payload=b"{}")
        assert invocations.submit(invocation)
        back = await _until(lambda: invocation in invocations.pending, 5)
        return back, invocations.is_running(invocation.request_id)
    finally:
        await listening.stop()


def _loops() -> list[Any]:
    runs: list[Any] = [asyncio.run]
    try:
        import uvloop
    except ImportError:  # forkric local runs on asyncio's loop then: tested above
        return runs
    return [*runs, uvloop.run]


@pytest.mark.parametrize("run", _loops(), ids=lambda run: run.__module__.split(".")[0])
def test_a_poll_reset_as_its_invocation_is_handed_gives_it_back(
        run: Callable[[Coroutine[Any, Any, tuple[bool, bool]]], tuple[bool, bool]]) -> None:
    # Before: the answer was written to a connection already gone, and the invocation waited
    # for its timeout ('Task timed out') as if a worker ran it.
    assert run(_reset_as_handed()) == (True, False)


def _post_error(port: int, request_id: str) -> bytes:
    """The supervisor's report of a dead worker's invocation (here from the test's own pid,
    which the stand-in runtime names as its supervisor); the status line answered."""
    body = b'{"errorType": "Runtime.ExitError", "errorMessage": "signal: killed"}'
    with socket.create_connection(("127.0.0.1", port)) as supervisor:
        supervisor.sendall(b"POST /2018-06-01/runtime/invocation/%s/error HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
                           % (request_id.encode(), len(body), body))
        return supervisor.recv(65536).split(b"\r\n", 1)[0]


async def _reported_after_a_give_back() -> tuple[bytes, bool, bytes, bool]:
    """Worker A is killed as its invocation's body arrives (its connection reset unread: the
    invocation goes to worker B), then the supervisor reports A's death for that invocation:
    refused while B runs it; accepted once B's connection is gone too."""
    invocations = Invocations(timeout_s=30, max_queue=10)
    service = _service(invocations)
    service.runtime.pid = os.getpid()  # type: ignore[misc]
    listening = server.serve(service.runtime_api, server.bind("127.0.0.1", 0), 10,
                             on_reset=service.unread)
    loop = asyncio.get_running_loop()
    try:
        first = socket.create_connection(("127.0.0.1", listening.port))
        first.sendall(NEXT)
        assert await _until(lambda: len(invocations.pollers) == 1, 10), "the poll never came"
        invocation = Invocation(function_name="f", payload=b"{}")
        assert invocations.submit(invocation)
        first.setblocking(False)
        await loop.sock_recv(first, 1)  # A's answer began...
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()  # ...and A was killed: reset, the rest unread
        assert await _until(lambda: invocation in invocations.pending, 5), "not given back"
        second = socket.create_connection(("127.0.0.1", listening.port))
        second.sendall(NEXT)
        assert await _until(lambda: invocations.is_running(invocation.request_id), 5)
        second.setblocking(False)
        answer = b""
        while not answer.endswith(b"\r\n\r\n{}"):  # B reads its invocation whole
            answer += await loop.sock_recv(second, 65536)
        port = listening.port
        while_b_runs = await loop.run_in_executor(None, _post_error, port, invocation.request_id)
        still_running = invocations.is_running(invocation.request_id)
        second.close()  # B dies too (a FIN: it read its invocation)
        assert await _until(lambda: getattr(invocation.peer, "lost", False), 5)
        after_b = await loop.run_in_executor(None, _post_error, port, invocation.request_id)
        return while_b_runs, still_running, after_b, invocations.is_running(invocation.request_id)
    finally:
        await listening.stop()


def test_a_dead_workers_report_does_not_fail_the_run_of_the_worker_it_went_to() -> None:
    # Before: 202, and the invocation B was running got A's Runtime.ExitError.
    refused, running, accepted, after = asyncio.run(_reported_after_a_give_back())
    assert refused.startswith(b"HTTP/1.1 403"), refused
    assert running
    assert accepted.startswith(b"HTTP/1.1 202"), accepted
    assert not after


async def _reported_as_it_goes_to_another() -> tuple[int, bool]:
    """Worker A is killed as its invocation's body arrives; the reset gives the invocation to
    worker B, already polling; the supervisor's report of A's death is read in the turns of the
    event loop between that hand-out and the service's write to B (the invocation is running
    again, B's connection not yet named its holder). The report's status, and whether the
    invocation still runs for B."""
    invocations = Invocations(timeout_s=30, max_queue=10)
    service = _service(invocations)
    service.runtime.pid = os.getpid()  # type: ignore[misc]
    loop = asyncio.get_running_loop()
    seen: list[Reply] = []

    async def report(request_id: str) -> None:
        body = b'{"errorType": "Runtime.ExitError", "errorMessage": "signal: killed"}'

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}
        supervisor = Peer()
        supervisor.pid = os.getpid()
        seen.append(await service.error(Request({"headers": [], PEER: supervisor}, receive),
                                        request_id))

    def on_reset(handed: object) -> None:
        service.unread(handed)  # gives it to B's poll...
        # ...and the report comes before B's request goes on (asyncio runs callbacks in order).
        loop.call_soon(lambda: loop.create_task(report(cast(Invocation, handed).request_id)))

    listening = server.serve(service.runtime_api, server.bind("127.0.0.1", 0), 10,
                             on_reset=on_reset)
    try:
        first = socket.create_connection(("127.0.0.1", listening.port))
        first.sendall(NEXT)
        assert await _until(lambda: len(invocations.pollers) == 1, 10), "the poll never came"
        invocation = Invocation(function_name="f", payload=b"{}")
        assert invocations.submit(invocation)
        first.setblocking(False)
        await loop.sock_recv(first, 1)  # A's answer began
        second = socket.create_connection(("127.0.0.1", listening.port))
        second.sendall(NEXT)  # B polls
        assert await _until(lambda: len(invocations.pollers) == 1, 10), "B's poll never came"
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()  # A killed: reset, the rest unread
        assert await _until(lambda: bool(seen), 5), "no report"
        assert await _until(lambda: invocation.peer is not None
                            and not getattr(invocation.peer, "lost", True), 5)
        second.close()
        return seen[0][0], invocations.is_running(invocation.request_id)
    finally:
        await listening.stop()


def test_a_dead_workers_report_read_as_its_invocation_goes_to_another_is_refused() -> None:
    # Before: 202 (its holder was still A's lost connection), the invoker got A's ExitError and
    # B was handed the invocation anyway: B ran it, and its answer was refused.
    status, running = asyncio.run(_reported_as_it_goes_to_another())
    assert (status, running) == (403, True)


async def _closed_as_written() -> tuple[bool, bool]:
    """A worker's process ends as the service writes its invocation: the worker's FIN reaches
    the service's socket after the answer was sent to it (the kernel answered that with a
    reset, which the read of the FIN does not show). True, False: the invocation is waiting
    again, not running on the gone connection."""
    invocations = Invocations(timeout_s=30, max_queue=10)
    service = _service(invocations)
    worker = socket.create_connection  # replaced by the connection below

    async def dying_worker(scope: Any, receive: Any, send: Any) -> None:
        async def send_and_die(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                worker.close()  # a FIN: nothing of the answer had arrived to be left unread
            await send(message)
        await service.runtime_api(scope, receive, send_and_die)

    listening = server.serve(dying_worker, server.bind("127.0.0.1", 0), 10,
                             on_reset=service.unread)
    try:
        worker = socket.create_connection(("127.0.0.1", listening.port))
        worker.sendall(NEXT)
        assert await _until(lambda: len(invocations.pollers) == 1, 10), "the poll never came"
        invocation = Invocation(function_name="f", payload=b"{}")
        assert invocations.submit(invocation)
        back = await _until(lambda: invocation in invocations.pending, 5)
        return back, invocations.is_running(invocation.request_id)
    finally:
        await listening.stop()


@pytest.mark.parametrize("run", _loops(), ids=lambda run: run.__module__.split(".")[0])
def test_an_invocation_written_to_a_worker_that_just_ended_is_given_back(
        run: Callable[[Coroutine[Any, Any, tuple[bool, bool]]], tuple[bool, bool]]) -> None:
    # Before: the FIN made it connection_lost(None), taken for a worker that read its answer
    # and died; the supervisor saw a worker that held nothing: 'Task timed out' after the
    # whole timeout (1 in ~100 SIGKILLs to workers under load, 2 MB events).
    assert run(_closed_as_written()) == (True, False)
