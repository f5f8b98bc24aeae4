"""The embedded Lambda service: the Invoke API for callers, the Runtime API for the workers.

Both are ASGI callables (served by uvicorn, see server.py) on one event loop, sharing the
`Invocations` state. Each handler returns its reply (status, body, headers), or None when there is
nobody left to answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast
from urllib.parse import parse_qs

from forkric.config import FUNCTION_NAME
from forkric.local import answers, eventstream, function_url, metadata, peers, streams
from forkric.local.answers import Result
from forkric.local.asgi import (
    Disconnected,
    Peer,
    Receive,
    Request,
    Scope,
    Send,
    encode,
    respond,
    safe,
    value,
)
from forkric.local.console import Console
from forkric.local.invocations import Invocation, Invocations
from forkric.local.invocations import request_id as new_request_id
from forkric.local.logcapture import LogCapture
from forkric.local.runtime import Runtime
from forkric.local.snapshot import Snapshot
from forkric.local.status import status
from forkric.local.streams import Stream

RUNTIME_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = RUNTIME_PREFIX + "/invocation/next"
INVOCATION_PREFIX = RUNTIME_PREFIX + "/invocation/"
INIT_ERROR_PATH = RUNTIME_PREFIX + "/init/error"
RESTORE_NEXT_PATH = RUNTIME_PREFIX + "/restore/next"
RESTORE_ERROR_PATH = RUNTIME_PREFIX + "/restore/error"
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"
STREAM_INVOKE_PREFIX = "/2021-11-15/functions/"  # InvokeWithResponseStream
STREAM_INVOKE_SUFFIX = "/response-streaming-invocations"
RESPONSE_MODE_HEADER = b"lambda-runtime-function-response-mode"
STATUS_PATH = "/status"
TAIL_BYTES = 4096
# An invocation handed out this many times to a connection that was reset unread is not given
# back again: it would otherwise go round for ever among workers that die as they read it.
MAX_HANDOUTS = 3
CLIENT_CONTEXT_LIMIT = 3583  # Lambda's limit on the decoded X-Amz-Client-Context
CROSS_SITE = ("cross-site", "same-site")  # Sec-Fetch-Site of a request another page made
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
ERROR_TYPE_HEADER = b"lambda-runtime-function-error-type"
JSON = b"application/json"
JSON_UTF8 = b"application/json; charset=utf-8"
ACCEPTED_BODY = json.dumps({"status": "OK"}).encode()

# Lambda's pattern for the Invoke API's Qualifier (FUNCTION_NAME's is in config: clients use it).
# ASCII: Python's \d also matches other scripts' digits, which Lambda's patterns do not.
QUALIFIER = re.compile(r"[a-zA-Z0-9$_-]{1,128}", re.ASCII)

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]


class Streamed:
    """An answer that is sent as it is made (the ASGI `send` is handed to it)."""

    def __init__(self, answer: Callable[[Send], Coroutine[Any, Any, None]]) -> None:
        self.answer = answer


Handler = Callable[[], Coroutine[Any, Any, "Reply | Streamed | None"]]


class Service:
    def __init__(self, invocations: Invocations, runtime: Runtime, capture: LogCapture,
                 console: Console | None = None, host: str = "127.0.0.1") -> None:
        self.invocations = invocations
        self.runtime = runtime
        self.capture = capture
        self.console = console
        self.host = host
        self.host_names = own_host_names(host)
        # Listening on loopback only, a Host naming some other machine is a web page's DNS
        # rebinding; asked to listen on the network, callers name this machine as they will.
        self.loopback_only = _is_loopback(host)
        self.stopping = False
        invocations.on_finish = self.finished
        invocations.on_submit = runtime.want
        self.snapshot = Snapshot(runtime.plan.config.snap_start, capture.echo_line,
                                 self.snap_start_timed_out)

    # Routing: seven fixed routes, a few comparisons.

    async def invoke_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _serve(Request(scope, receive), send, self._route_invoke_api)

    async def runtime_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _serve(Request(scope, receive), send, self._route_runtime_api)

    def _route_invoke_api(self, request: Request) -> Handler | Reply:
        refusal = self._foreign_host(request)
        if refusal is not None:
            return refusal
        path = request.path
        if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
            name = path[len(INVOKE_PREFIX):-len(INVOKE_SUFFIX)]
            if name and "/" not in name:
                return self._same_origin(request, _only(
                    request, "POST", lambda: self._checked_invoke(request, name)))
        if path.startswith(STREAM_INVOKE_PREFIX) and path.endswith(STREAM_INVOKE_SUFFIX):
            name = path[len(STREAM_INVOKE_PREFIX):-len(STREAM_INVOKE_SUFFIX)]
            if name and "/" not in name:
                return self._same_origin(request, _only(
                    request, "POST", lambda: self._checked_invoke(request, name, streamed=True)))
        if path == STATUS_PATH:
            return self._same_origin(request,
                                     _only(request, "GET", lambda: self.status(request)))
        if self.runtime.plan.config.function_url:  # browsers may call a function URL
            return lambda: self.url_invoke(request)
        return _plain(404, "Not Found")

    def _route_runtime_api(self, request: Request) -> Handler | Reply:
        path = request.path
        if path == NEXT_PATH:
            return self._workers_only(
                request, _only(request, "GET", lambda: self.next_invocation(request)))
        if path.startswith(INVOCATION_PREFIX):
            request_id, _, action = path[len(INVOCATION_PREFIX):].partition("/")
            if action == "response":
                return self._workers_only(
                    request, _only(request, "POST", lambda: self.response(request, request_id)))
            if action == "error":
                return self._workers_only(
                    request, _only(request, "POST", lambda: self.error(request, request_id)))
        if path == INIT_ERROR_PATH:
            return self._workers_only(
                request, _only(request, "POST", lambda: self.init_error(request)))
        if path == metadata.PATH:  # its bearer token is its guard
            return _only(request, "GET", lambda: self.metadata(request))
        if self.snapshot.enabled:  # else 404, as the RIE answers
            if path == RESTORE_NEXT_PATH:
                return self._workers_only(request, _only(request, "GET", self.restore_next))
            if path == RESTORE_ERROR_PATH:
                return self._workers_only(
                    request, _only(request, "POST", lambda: self.restore_error(request)))
        return _plain(404, "Not Found")

    def _workers_only(self, request: Request, handler: Handler | Reply) -> Handler | Reply:
        """The Runtime API serves the runtime's own processes only: any other local process (or
        a browser page) could take callers' events, forge their answers, or fail them all with
        an init error. Asked once per connection (peers.py); where the system cannot tell
        (not Linux), every local process is served."""
        if not peers.SUPPORTED or isinstance(handler, tuple):
            return handler
        peer = request.peer
        if peer.pid is None:
            peer.pid = self.runtime.process_of(request.scope["client"], request.scope["server"])
        return handler if peer.pid else not_a_worker()

    # The Invoke API.

    def _foreign_host(self, request: Request) -> Reply | None:
        """A refusal for a request naming a host that is not this machine's: a web page's,
        through DNS rebinding (checked while the service listens on loopback only)."""
        host = request.header(b"host")
        if self.loopback_only and host is not None and not self._own_host(_host_name(host)):
            return _answer(answers.service_error(
                403, "AccessDeniedException",
                f"forkric local: Host {host!r} does not name this machine; call it by "
                f"localhost, an IP address or {self.host}"))
        return None

    def _same_origin(self, request: Request, handler: Handler | Reply) -> Handler | Reply:
        """`handler`, unless another web page made the browser send the request (a simple POST
        needs no CORS preflight): Lambda's Invoke API is for signed clients, not pages."""
        host = request.header(b"host")
        origin = request.header(b"origin")
        site = request.header(b"sec-fetch-site")
        if (origin is not None and origin != f"http://{host}") or site in CROSS_SITE:
            return _answer(answers.service_error(
                403, "AccessDeniedException",
                f"forkric local: a request from another origin ({origin or site}) is refused: "
                f"the Invoke API is for local clients, not web pages"))
        return handler

    def _own_host(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if name in self.host_names or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    async def _checked_invoke(self, request: Request, name: str,
                              streamed: bool = False) -> Reply | Streamed:
        qualifier = parse_qs(request.query).get("Qualifier", [None])[0] if request.query else None
        if not FUNCTION_NAME.fullmatch(name):
            return _answer(answers.invalid_value("functionName", name, FUNCTION_NAME.pattern))
        if qualifier is not None:
            if not QUALIFIER.fullmatch(qualifier):
                return _answer(answers.invalid_value("qualifier", qualifier, QUALIFIER.pattern))
            name = f"{name}:{qualifier}"
        if streamed:
            return await self.invoke_with_response_stream(request, name)
        return await self.invoke(request, name)

    async def invoke(self, request: Request, name: str) -> Reply:
        invocation = await self._accept(request, name)
        if not isinstance(invocation, Invocation):
            return invocation
        if invocation.event:
            return 202, b"", [(b"x-amzn-RequestId", invocation.request_id.encode())]
        # Not shielded: uvicorn does not cancel a handler whose caller leaves.
        result = await invocation.done
        if result.stream is not None:  # a streaming function invoked the buffered way
            result = await _gathered(result.stream)
        return _answer(result, invocation.request_id)

    async def invoke_with_response_stream(self, request: Request, name: str) -> Reply | Streamed:
        """InvokeWithResponseStream: the answer is an event stream (PayloadChunk events as the
        function streams, then InvokeComplete), whatever way the function answered."""
        invocation = await self._accept(request, name, streamed=True)
        if not isinstance(invocation, Invocation):
            return invocation
        result = await invocation.done
        if result.stream is None and result.status != 200:
            if answers.ERROR_TYPE in result.headers:  # the service's own (SnapStart's): HTTP
                return _answer(result, invocation.request_id)
            # An init error (502 for Invoke, as the RIE): InvokeComplete names it, where boto3
            # would otherwise raise a ClientError with no message ("An error occurred (502)").
            result = answers.function_error(result.body)

        async def answer(send: Send) -> None:
            await _send_event_stream(request, send, invocation, result)

        return Streamed(answer)

    async def url_invoke(self, request: Request) -> Reply | Streamed:
        """A request to the function URL (--function-url): invoked with its payload format 2.0
        event, answered as a function URL answers (see function_url.py)."""
        body, size = await request.body(answers.REQUEST_LIMIT)
        if self.stopping:
            return _answer(answers.stopping())
        if body is None:
            return _answer(answers.request_too_large(size))
        request_id = new_request_id()
        invocation = Invocation(function_name="function", request_id=request_id,
                                payload=function_url.event(request, body, request_id))
        if not self.invocations.submit(invocation):
            return _answer(answers.too_many_requests(self.invocations.max_queue))
        result = await invocation.done

        async def answer(send: Send) -> None:
            with _abandoned_if_gone(request, result.stream):
                await function_url.answer(send, result)

        return Streamed(answer)

    async def _accept(self, request: Request, name: str,
                      streamed: bool = False) -> Invocation | Reply:
        """Check an Invoke API call and queue its invocation; the answer when refused."""
        payload, size = await request.body(answers.REQUEST_LIMIT)
        if self.stopping:
            return _answer(answers.stopping())
        if payload is None:
            return _answer(answers.request_too_large(size))
        kind = request.header(b"x-amz-invocation-type") or "RequestResponse"
        if kind not in INVOCATION_TYPES or (streamed and kind == "Event"):
            return _answer(answers.service_error(
                400, "InvalidParameterValueException", f"Unsupported invocation type {kind!r}"))
        client_context = decode_client_context(request.header(b"x-amz-client-context"))
        if client_context is None:
            return _answer(answers.service_error(
                400, "InvalidRequestContentException",
                "Client context must be a valid Base64-encoded JSON object."))
        if kind == "DryRun":
            return 204, b"", [(b"x-amzn-RequestId", new_request_id().encode())]
        problem = answers.json_problem(payload)
        if problem is not None:  # Lambda parses the event before it invokes anything
            return _answer(answers.invalid_json(problem))
        invocation = Invocation(
            # Lambda hands a function invoked without a payload the event {} (passed on empty,
            # awslambdaric would fail it as Runtime.UnmarshalError).
            function_name=name, payload=payload or b"{}",
            client_context=client_context or None,
            trace_id=request.header(b"x-amzn-trace-id"),
            tenant_id=request.header(b"x-amz-tenant-id"),
            tail=request.header(b"x-amz-log-type") == "Tail",
            event=kind == "Event")
        if not self.invocations.submit(invocation):
            return _answer(answers.too_many_requests(self.invocations.max_queue))
        return invocation

    async def status(self, request: Request) -> Reply:
        body = await status(self.invocations, self.runtime, _on_loopback(request))
        return 200, json.dumps(body, indent=2).encode(), [(b"content-type", JSON_UTF8)]

    # The Runtime API.

    async def next_invocation(self, request: Request) -> Reply | None:
        self.snapshot.done()  # a worker polls: the after-restore hooks, if any, finished
        if not self.runtime.ready:  # a worker polls: perhaps the last one to start
            self.runtime.check_ready()
        self.runtime.initialised = True  # as on Lambda: init is over once a worker asks
        invocation = self.invocations.take() or await self._wait_for_invocation(request)
        if invocation is None:
            return None
        if request.peer.lost:
            # Gone between the hand-out and now (a worker's reset seen in the same turns of
            # the event loop): the answer would be written to nobody, and the invocation wait
            # for its timeout. Never written, so first in line again.
            self.invocations.give_back(invocation)
            return None
        invocation.peer = request.peer  # only this connection may answer it
        request.peer.handed = invocation  # until the worker's next request shows it read it
        headers = [
            (b"Lambda-Runtime-Aws-Request-Id", invocation.request_id.encode()),
            (b"Lambda-Runtime-Deadline-Ms", b"%d" % invocation.deadline_ms),
            (b"Lambda-Runtime-Invoked-Function-Arn", value(invocation.arn)),
            (b"content-type", JSON),
        ]
        if invocation.trace_id:
            headers.append((b"Lambda-Runtime-Trace-Id", value(invocation.trace_id)))
        if invocation.client_context:
            headers.append((b"Lambda-Runtime-Client-Context", safe(invocation.client_context)))
        if invocation.tenant_id:
            headers.append((b"Lambda-Runtime-Aws-Tenant-Id", value(invocation.tenant_id)))
        return 200, invocation.payload, headers

    async def _wait_for_invocation(self, request: Request) -> Invocation | None:
        """A long poll: the next invocation, or None when the worker leaves first (then an
        invocation handed to it in the meantime goes back to the head of the queue)."""
        waiting = asyncio.ensure_future(self.invocations.next())
        left = asyncio.ensure_future(request.disconnected())
        try:
            await asyncio.wait((waiting, left), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            left.cancel()
            if waiting.done() and not waiting.cancelled():
                self.invocations.give_back(waiting.result())
            waiting.cancel()
            raise
        if not left.done():
            left.cancel()
            return waiting.result()
        if not waiting.done():
            waiting.cancel()  # Invocations.next gives back what it was handed meanwhile
        elif not waiting.cancelled():
            self.invocations.give_back(waiting.result())
        return None

    def unread(self, handed: object) -> None:
        """The connection an invocation was handed out on was reset before the worker read it:
        a worker that left its long poll as the answer was written (a stop, a retire). Its
        handler never started, so it goes back to the head of the queue, as one handed out
        after the worker left does; after `MAX_HANDOUTS` resets it stays with its worker's
        fate (a report of its death, the runtime's end, or the timeout)."""
        invocation = cast(Invocation, handed)
        if not self.invocations.is_running(invocation.request_id) or invocation.stream \
                or invocation.handouts >= MAX_HANDOUTS:
            return
        invocation.handouts += 1
        self.invocations.give_back(invocation)

    async def response(self, request: Request, request_id: str) -> Reply | None:
        if request.header(RESPONSE_MODE_HEADER) == "streaming":
            return await self.streamed_response(request, request_id)
        body, size = await request.body(answers.RESPONSE_LIMIT)
        refusal = self._not_answerable(request, request_id)
        if refusal is not None:
            return refusal
        if body is None:
            return self._too_large(request_id, size)
        content_type = request.header(b"content-type") or "application/json"
        self.invocations.finish(request_id, answers.success(body, content_type))
        return accepted()

    async def streamed_response(self, request: Request, request_id: str) -> Reply | None:
        """A streamed response: each chunk goes to the invoker as it arrives; the trailers say
        whether it ended in an error. A worker whose connection breaks mid-stream leaves the
        invocation open: its supervisor reports the death at once (/error), else the timeout
        ends it."""
        invocation = self.invocations.get(request_id)
        refusal = self._not_answerable(request, request_id)
        if invocation is None or refusal is not None or invocation.stream is not None:
            await request.body(0)
            return refusal or invalid_request_id()
        stream = Stream(request.header(b"content-type") or "application/octet-stream")
        self.invocations.begin_stream(invocation, stream)
        while True:
            message = await request.receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            stream.received += len(chunk)
            if stream.received > streams.STREAM_LIMIT:
                self.invocations.finish(request_id, streams.too_large())  # the rest is dropped
            elif chunk:
                await stream.put(chunk)
            if not message.get("more_body", False):
                break
        # uvicorn's httptools protocol adds a chunked body's trailers to the request's header
        # list as llhttp reads them: they are its last entries once the body is complete.
        trailers = dict(request.scope["headers"])
        self.invocations.finish(request_id, streams.outcome_of(trailers, request_id))
        if stream.received > streams.STREAM_LIMIT:
            return 413, streams.too_large().body, [(b"content-type", JSON_UTF8)]
        return accepted()

    async def error(self, request: Request, request_id: str) -> Reply:
        body, size = await request.body(answers.RESPONSE_LIMIT)
        refusal = self._not_answerable(request, request_id)
        if refusal is not None:
            return refusal
        if body is None:  # was answered {"errorMessage": ""}: the error silently dropped
            return self._too_large(request_id, size)
        if not body:
            body = answers.error_body(request.header(ERROR_TYPE_HEADER, "Unhandled") or "", "")
        self.invocations.finish(request_id, answers.function_error(body))
        return accepted()

    def _not_answerable(self, request: Request, request_id: str) -> Reply | None:
        """None when this connection may answer `request_id`: the one it was handed out on,
        or the runtime's supervisor reporting the death of the worker that holds it. (A worker
        killed as its invocation's body arrived held it, and its connection's reset gave it to
        another worker: the report of the first death must not fail the second's run.)"""
        invocation = self.invocations.get(request_id)
        if invocation is None:
            return invalid_request_id()
        if invocation.peer is request.peer or not peers.SUPPORTED \
                or (request.peer.pid and request.peer.pid == self.runtime.pid
                    and _holder_gone(invocation)):
            return None
        return not_its_connection()

    def _too_large(self, request_id: str, size: int) -> Reply:
        """A result or an error over the payload limit: the invoker gets
        Function.ResponseSizeTooLarge with the size, the worker Lambda's 413."""
        self.invocations.finish(request_id, answers.response_too_large(size))
        return _runtime_api_error(413, "RequestEntityTooLarge",
                                  f"Exceeded maximum allowed payload size "
                                  f"({answers.RESPONSE_LIMIT} bytes).")

    async def init_error(self, request: Request) -> Reply:
        body, _ = await request.body(answers.RESPONSE_LIMIT)
        if self.runtime.initialised:  # a worker already asked for work: init succeeded
            return invalid_state_transition()
        body = body or answers.error_body(
            request.header(ERROR_TYPE_HEADER, "Runtime.Unknown") or "", "")
        self.runtime.init_failed = True
        if self.console is not None:
            self.console.init_error(body)
        # Every invocation waiting on this initialisation gets its error, as in the RIE.
        self.invocations.fail_pending(lambda invocation: answers.init_error(body))
        self.invocations.fail_running(lambda invocation: answers.init_error(body))
        return accepted()

    # SnapStart (--snap-start) and the metadata endpoint.

    async def restore_next(self) -> Reply:
        await self.snapshot.restore_next()
        return 200, b"", []

    async def restore_error(self, request: Request) -> Reply:
        body, _ = await request.body(answers.RESPONSE_LIMIT)
        self.snapshot.done()
        self.capture.echo_line("forkric local: SnapStart: an after-restore hook failed: "
                               + (body or b"").decode("utf-8", "replace"))
        self.runtime.init_failed = True  # the next invocation starts (and restores) it again
        self.invocations.fail_pending(lambda invocation: answers.snap_start_error())
        return accepted()

    def snap_start_timed_out(self) -> None:
        self.invocations.fail_pending(lambda invocation: answers.snap_start_timeout())

    async def metadata(self, request: Request) -> Reply:
        region = self.runtime.plan.config.environ.get("AWS_REGION") or "us-east-1"
        return metadata.answer(request.header(b"authorization"), self.runtime.plan.metadata_token,
                               region)

    # What happens around invocations.

    def finished(self, invocation: Invocation, result: Result) -> None:
        """An invocation ends: give the invoker its log's tail if asked."""
        if not invocation.tail:
            return
        lines = self.capture.lines_since(invocation.request_id, invocation.started)
        duration_ms = (time.monotonic() - invocation.started) * 1000
        rid = invocation.request_id
        text = "\n".join([f"START RequestId: {rid} Version: $LATEST", *lines,
                          f"END RequestId: {rid}",
                          f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\t"]) + "\n"
        tail = text.encode("utf-8")[-TAIL_BYTES:]
        result.headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode("ascii")

    def runtime_ended(self, returncode: int) -> None:
        """The runtime died as a whole: what its workers held ends with Runtime.ExitError."""
        self.invocations.fail_running(
            lambda invocation: answers.runtime_exit(invocation.request_id, returncode))
        if self.invocations.pending:
            self.runtime.want()

    async def stop(self, grace_s: float) -> None:
        self.stopping = True
        self.invocations.fail_pending(lambda invocation: answers.stopping())
        await self.runtime.stop(grace_s)
        # What workers gave back while they stopped (they left their long polls) is answered too.
        self.invocations.fail_pending(lambda invocation: answers.stopping())


async def _serve(request: Request, send: Send,
                 route: Callable[[Request], Handler | Reply]) -> None:
    handler = route(request)
    try:
        reply = handler if isinstance(handler, tuple) else await handler()
    except Disconnected:
        return
    if isinstance(reply, Streamed):
        await reply.answer(send)
    elif reply is not None:
        await respond(send, *reply)


@contextlib.contextmanager
def _abandoned_if_gone(request: Request, stream: Stream | None) -> Iterator[None]:
    """While a stream is being answered: a caller that leaves abandons it (the worker's chunks
    are then read and dropped, so it never waits on a reader that is gone)."""
    if stream is None:
        yield
        return
    left = asyncio.ensure_future(request.disconnected())
    left.add_done_callback(lambda done: None if done.cancelled() else stream.abandon())
    try:
        yield
    finally:
        left.cancel()


async def _gathered(stream: Stream) -> Result:
    """A stream's whole body, for an invoker that asked for a buffered answer (Invoke): over
    the buffered response limit, Function.ResponseSizeTooLarge."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.chunks():
        size += len(chunk)
        if size > answers.RESPONSE_LIMIT:
            stream.abandon()
            return answers.response_too_large(size)
        parts.append(chunk)
    assert stream.outcome is not None
    if stream.outcome.function_error:
        return stream.outcome
    return answers.success(b"".join(parts), stream.content_type)


async def _send_event_stream(request: Request, send: Send, invocation: Invocation,
                             result: Result) -> None:
    """InvokeWithResponseStream's answer: the HTTP head at once, a PayloadChunk per chunk as it
    comes, then InvokeComplete. A caller that leaves abandons the stream (the worker goes on)."""
    stream = result.stream
    content_type = stream.content_type if stream is not None else result.content_type
    headers = [(b"content-type", value(content_type)),
               (b"X-Amz-Executed-Version", b"$LATEST"),
               (b"x-amzn-RequestId", invocation.request_id.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if stream is not None:
        with _abandoned_if_gone(request, stream):
            async for chunk in stream.chunks():
                await send({"type": "http.response.body", "body": eventstream.payload_chunk(chunk),
                            "more_body": True})
        if stream.outcome is None:  # abandoned: nobody reads the end
            return
        result = stream.outcome
    elif not result.function_error and result.body:
        await send({"type": "http.response.body", "body": eventstream.payload_chunk(result.body),
                    "more_body": True})
    code, details = streams.error_fields(result) or (None, None)
    complete = eventstream.invoke_complete(code, details, result.headers.get("X-Amz-Log-Result"))
    await send({"type": "http.response.body", "body": complete, "more_body": False})


def _only(request: Request, method: str, handler: Handler) -> Handler | Reply:
    if request.method == method:
        return handler
    reply = _plain(405, "Method Not Allowed")
    reply[2].append((b"allow", method.encode()))
    return reply


def own_host_names(host: str) -> frozenset[str]:
    """The names that may stand in a caller's Host: localhost, the one the service was told to
    listen on, and this machine's own (IP addresses are taken as they are)."""
    names = {"localhost", host.lower()}
    with contextlib.suppress(OSError):
        names.update((socket.gethostname().lower(), socket.getfqdn().lower()))
    return frozenset(names)


def _host_name(authority: str) -> str:
    """'[::1]:9000' -> '::1', 'example:9000' -> 'example', '::1' -> '::1'."""
    if authority.startswith("["):
        return authority[1:authority.find("]")]
    name, colon, port = authority.rpartition(":")
    return name if colon and ":" not in name and port.isdigit() else authority


def _on_loopback(request: Request) -> bool:
    client = request.scope.get("client")
    return client is not None and _is_loopback(str(client[0]))


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def _plain(status: int, reason: str) -> Reply:
    return status, f"{status}: {reason}".encode(), [(b"content-type", b"text/plain; charset=utf-8")]


def _answer(result: Result, request_id: str | None = None) -> Reply:
    headers = [(b"content-type", value(result.content_type)),
               (b"X-Amz-Executed-Version", b"$LATEST"),
               (b"x-amzn-RequestId", (request_id or new_request_id()).encode())]
    if result.headers:
        headers += encode(result.headers)
    return result.status, result.body, headers


def accepted() -> Reply:
    return 202, ACCEPTED_BODY, [(b"content-type", JSON_UTF8)]


def _runtime_api_error(status: int, error_type: str, message: str) -> Reply:
    body = json.dumps({"errorMessage": message, "errorType": error_type})
    return status, body.encode(), [(b"content-type", JSON_UTF8)]


def not_a_worker() -> Reply:
    return _runtime_api_error(403, "AccessDeniedException",
                              "forkric local: the Runtime API serves only the processes of the "
                              "runtime it started")


def _holder_gone(invocation: Invocation) -> bool:
    """The connection the invocation was handed out on is closed, or its process has ended
    (the supervisor reports a death once it has reaped the worker). One given back and not yet
    written to its next connection has no holder: a report for it is of an earlier one."""
    peer = invocation.peer
    if peer is None:
        return False
    if not isinstance(peer, Peer) or peer.lost or not peer.pid:
        return True
    try:
        os.kill(peer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        pass
    return False


def not_its_connection() -> Reply:
    return _runtime_api_error(403, "InvalidRequestID",
                              "forkric local: this request id was handed out on another "
                              "connection, and only that one may answer it")


def invalid_state_transition() -> Reply:
    # The RIE's answer to an init error once init is over (observed, aws-sam-cli 1.170).
    return _runtime_api_error(403, "InvalidStateTransition",
                              "State transition from Ready to InitError failed for runtime. "
                              "Error: State transition is not allowed")


def invalid_request_id() -> Reply:
    # What the Runtime API answers for an id that is unknown or already answered (RIE, observed).
    return _runtime_api_error(400, "InvalidRequestID", "Invalid request ID")


def decode_client_context(header: str | None) -> bytes | None:
    """The JSON of X-Amz-Client-Context as the caller sent it (b'' when absent), or None when
    it is not a JSON object in base64. The bytes travel as they are, as the RIE carries them
    (re-encoding them failed on a lone surrogate escape and stopped the runtime); line breaks
    become spaces on the way (`asgi.safe`), which leaves the JSON's meaning as it was."""
    if not header:
        return b""
    try:
        raw = base64.b64decode(header, validate=True)
        text = raw.decode("utf-8")
        if len(text) > CLIENT_CONTEXT_LIMIT or not isinstance(json.loads(text), dict):
            return None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return raw
