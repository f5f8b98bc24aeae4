"""The embedded Lambda service: the Invoke API for callers, the Runtime API for the workers.

Both are aiohttp applications on one event loop, sharing the `Invocations` state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid

from aiohttp import web

from forkric.local import answers
from forkric.local.answers import Result
from forkric.local.invocations import Invocation, Invocations
from forkric.local.logcapture import LogCapture
from forkric.local.runtime import Runtime, wording
from forkric.local.status import status

RUNTIME_PREFIX = "/2018-06-01/runtime"
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

    # Applications.

    def invoke_app(self) -> web.Application:
        app = web.Application(client_max_size=answers.REQUEST_LIMIT + 1)
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)
        app.router.add_get("/status", self.status)
        return app

    def runtime_app(self) -> web.Application:
        app = web.Application(client_max_size=answers.RESPONSE_LIMIT + 1)
        app.router.add_get(RUNTIME_PREFIX + "/invocation/next", self.next_invocation)
        app.router.add_post(RUNTIME_PREFIX + "/invocation/{id}/response", self.response)
        app.router.add_post(RUNTIME_PREFIX + "/invocation/{id}/error", self.error)
        app.router.add_post(RUNTIME_PREFIX + "/init/error", self.init_error)
        return app

    # The Invoke API.

    async def invoke(self, request: web.Request) -> web.StreamResponse:
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
            function_name=request.match_info["name"], payload=payload,
            client_context=client_context or None,
            trace_id=request.headers.get("X-Amzn-Trace-Id"),
            tail=request.headers.get("X-Amz-Log-Type", "None") == "Tail",
            event=kind == "Event")
        if not self.invocations.submit(invocation):
            return _answer(answers.too_many_requests(self.invocations.max_queue))
        if invocation.event:
            return web.Response(status=202, headers={"x-amzn-RequestId": invocation.request_id})
        result = await asyncio.shield(invocation.done)
        return _answer(result, invocation.request_id)

    async def status(self, request: web.Request) -> web.StreamResponse:
        body = await status(self.invocations, self.runtime)
        return web.json_response(body, dumps=lambda value: json.dumps(value, indent=2))

    # The Runtime API.

    async def next_invocation(self, request: web.Request) -> web.StreamResponse:
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

    async def response(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["id"]
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

    async def error(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["id"]
        body, _ = await read_limited(request, answers.RESPONSE_LIMIT)
        if not self.invocations.is_running(request_id):
            return invalid_request_id()
        if not body:
            body = answers.error_body(request.headers.get(ERROR_TYPE_HEADER, "Unhandled"), "")
        self.invocations.finish(request_id, answers.function_error(body))
        return accepted()

    async def init_error(self, request: web.Request) -> web.StreamResponse:
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
        """An invocation ends: collect its log lines, and give the invoker its tail if asked."""
        lines = self.capture.collect(invocation.request_id)
        if not invocation.tail:
            return
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


async def read_limited(request: web.Request, limit: int) -> tuple[bytes | None, int]:
    """The body, or None (and its size) when it is over the limit; the rest is read and dropped."""
    length = request.content_length
    if length is not None and length <= limit:
        return await request.read(), length
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
