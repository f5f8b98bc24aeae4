"""The embedded Lambda service: the Invoke API for callers, the Runtime API for the workers.

Both are aiohttp low-level servers on one event loop, sharing the `Invocations` state.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from urllib.parse import parse_qs, unquote

from aiohttp import web

from forkric.local import answers
from forkric.local.answers import Result
from forkric.local.invocations import Invocation, Invocations
from forkric.local.logcapture import LogCapture
from forkric.local.runtime import Runtime, wording
from forkric.local.status import status

RUNTIME_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = RUNTIME_PREFIX + "/invocation/next"
INVOCATION_PREFIX = RUNTIME_PREFIX + "/invocation/"
INIT_ERROR_PATH = RUNTIME_PREFIX + "/init/error"
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"
STATUS_PATH = "/status"
TAIL_BYTES = 4096
CLIENT_CONTEXT_LIMIT = 3583  # Lambda's limit on the decoded X-Amz-Client-Context
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# The Runtime API's 202 answer, as `web.json_response({"status": "OK"})` writes it, made once.
ACCEPTED_BODY = json.dumps({"status": "OK"}).encode()
ACCEPTED_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class Service:
    def __init__(self, invocations: Invocations, runtime: Runtime, capture: LogCapture) -> None:
        self.invocations = invocations
        self.runtime = runtime
        self.capture = capture
        self.stopping = False
        invocations.on_finish = self.finished
        invocations.on_submit = runtime.want

    # Routing. aiohttp's low-level server with a few comparisons instead of its router: the
    # Application's router, middleware and match_info cost about a tenth of the service's CPU
    # per invocation (profiled), and this service has seven fixed routes.

    def invoke_server(self) -> web.Server:
        return web.Server(self.route_invoke_api, access_log=None)

    def runtime_server(self) -> web.Server:
        # handler_cancellation: a worker that leaves while it long-polls must not be handed work.
        return web.Server(self.route_runtime_api, handler_cancellation=True, access_log=None)

    async def route_invoke_api(self, request: web.BaseRequest) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
            name = unquote(path[len(INVOKE_PREFIX):-len(INVOKE_SUFFIX)])
            if name and "/" not in name:
                _allow(request, "POST")
                if query and (qualifier := parse_qs(query).get("Qualifier")):
                    name = f"{name}:{qualifier[0]}"
                return await self.invoke(request, name)
        if path == STATUS_PATH:
            _allow(request, "GET")
            return await self.status()
        raise web.HTTPNotFound()

    async def route_runtime_api(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]  # no URL object is built for it
        if path == NEXT_PATH:
            _allow(request, "GET")
            return await self.next_invocation(request)
        if path.startswith(INVOCATION_PREFIX):
            request_id, _, action = path[len(INVOCATION_PREFIX):].partition("/")
            if action == "response":
                _allow(request, "POST")
                return await self.response(request, unquote(request_id))
            if action == "error":
                _allow(request, "POST")
                return await self.error(request, unquote(request_id))
        if path == INIT_ERROR_PATH:
            _allow(request, "POST")
            return await self.init_error(request)
        raise web.HTTPNotFound()

    # The Invoke API.

    async def invoke(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        if self.stopping:
            return _answer(answers.stopping())
        payload, size = await read_limited(request, answers.REQUEST_LIMIT)
        if payload is None:
            return _answer(answers.request_too_large(size))
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in INVOCATION_TYPES:
            return _answer(answers.service_error(
                400, "InvalidParameterValueException", f"Unsupported invocation type {kind!r}"))
        client_context = decode_client_context(request.headers.get("X-Amz-Client-Context"))
        if client_context is False:
            return _answer(answers.service_error(
                400, "InvalidRequestContentException",
                "Client context must be a valid Base64-encoded JSON object."))
        if kind == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})
        invocation = Invocation(
            function_name=name, payload=payload,
            client_context=client_context or None,
            trace_id=request.headers.get("X-Amzn-Trace-Id"),
            tail=request.headers.get("X-Amz-Log-Type", "None") == "Tail",
            event=kind == "Event")
        if not self.invocations.submit(invocation):
            return _answer(answers.too_many_requests(self.invocations.max_queue))
        if invocation.event:
            return web.Response(status=202, headers={"x-amzn-RequestId": invocation.request_id})
        # Not shielded: the Invoke API's handlers are not cancelled when a caller leaves.
        result = await invocation.done
        return _answer(result, invocation.request_id)

    async def status(self) -> web.StreamResponse:
        body = await status(self.invocations, self.runtime)
        return web.json_response(body, dumps=lambda value: json.dumps(value, indent=2))

    # The Runtime API.

    async def next_invocation(self, request: web.BaseRequest) -> web.StreamResponse:
        invocation = await self.invocations.next()
        if request.transport is None or request.transport.is_closing():
            self.invocations.give_back(invocation)  # the worker left while it waited
            raise web.HTTPServiceUnavailable()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.arn,
            "Content-Type": "application/json",
        }
        if invocation.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        return web.Response(body=invocation.payload, headers=headers)

    async def response(self, request: web.BaseRequest, request_id: str) -> web.StreamResponse:
        body, size = await read_limited(request, answers.RESPONSE_LIMIT)
        if not self.invocations.is_running(request_id):
            return invalid_request_id()
        if body is None:
            self.invocations.finish(request_id, answers.response_too_large(size))
            return web.json_response({
                "errorMessage": f"Exceeded maximum allowed payload size "
                                f"({answers.RESPONSE_LIMIT} bytes).",
                "errorType": "RequestEntityTooLarge"}, status=413)
        content_type = request.headers.get("Content-Type", "application/json")
        self.invocations.finish(request_id, answers.success(body, content_type))
        return accepted()

    async def error(self, request: web.BaseRequest, request_id: str) -> web.StreamResponse:
        body, _ = await read_limited(request, answers.RESPONSE_LIMIT)
        if not self.invocations.is_running(request_id):
            return invalid_request_id()
        if not body:
            body = answers.error_body(request.headers.get(ERROR_TYPE_HEADER, "Unhandled"), "")
        self.invocations.finish(request_id, answers.function_error(body))
        return accepted()

    async def init_error(self, request: web.BaseRequest) -> web.StreamResponse:
        body, _ = await read_limited(request, answers.RESPONSE_LIMIT)
        body = body or answers.error_body(
            request.headers.get(ERROR_TYPE_HEADER, "Runtime.Unknown"), "")
        self.runtime.init_failed = True
        # Every invocation waiting on this initialisation gets its error, as in the RIE.
        self.invocations.fail_pending(lambda invocation: answers.init_error(body))
        self.invocations.fail_running(lambda invocation: answers.init_error(body))
        return accepted()

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
        how = wording(returncode)
        self.invocations.fail_running(
            lambda invocation: answers.runtime_exit(invocation.request_id, how))
        if self.invocations.pending:
            self.runtime.want()

    async def stop(self, grace_s: float) -> None:
        self.stopping = True
        self.invocations.fail_pending(lambda invocation: answers.stopping())
        await self.runtime.stop(grace_s)


def _answer(result: Result, request_id: str | None = None) -> web.Response:
    headers = {**result.headers, "Content-Type": result.content_type,
               "X-Amz-Executed-Version": "$LATEST",
               "x-amzn-RequestId": request_id or str(uuid.uuid4())}
    return web.Response(status=result.status, body=result.body, headers=headers)


def accepted() -> web.Response:
    return web.Response(status=202, body=ACCEPTED_BODY, headers=ACCEPTED_HEADERS)


def invalid_request_id() -> web.Response:
    # What the Runtime API answers for an id that is unknown or already answered (RIE, observed).
    return web.json_response({"errorMessage": "Invalid request ID",
                              "errorType": "InvalidRequestID"}, status=400)


def _allow(request: web.BaseRequest, method: str) -> None:
    if request.method != method:
        raise web.HTTPMethodNotAllowed(request.method, [method])


async def read_limited(request: web.BaseRequest, limit: int) -> tuple[bytes | None, int]:
    """The body, or None (and its size) when it is over the limit; the rest is read and dropped."""
    length = request.content_length
    if length is not None and length <= limit:
        content = request.content
        if content.is_eof():  # all of it arrived with the headers: no read loop (profiled)
            return content.read_nowait(), length
        return await content.read(), length
    kept: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size <= limit:
            kept.append(chunk)
    return (b"".join(kept) if size <= limit else None), size


def decode_client_context(header: str | None) -> str | bool:
    """The JSON text of X-Amz-Client-Context ('' when absent), or False when it is not valid."""
    if not header:
        return ""
    try:
        text = base64.b64decode(header, validate=True).decode("utf-8")
        if len(text) > CLIENT_CONTEXT_LIMIT or not isinstance(json.loads(text), dict):
            return False
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return text
