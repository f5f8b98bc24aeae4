"""Response streaming: the handler contract (opt-in) and the chunks it yields.

A handler opts in with `@response_stream` (or the whole function with
`FORKRIC_RESPONSE_STREAMING=1`); it may then return, or be, a generator, an async generator or
any iterator of `bytes`/`str` chunks, or a `StreamingResponse` that adds the HTTP status, headers
and cookies a function URL answers with. Each chunk is posted to the Runtime API as it is yielded
(see `runtime_api.RuntimeAPI.post_stream`). Without the mark a generator result is
`Runtime.MarshalError`, exactly as awslambdaric answers it.

    from forkric import StreamingResponse, response_stream

    @response_stream
    def handler(event, context):
        def tokens():
            for word in ("Hello", " ", "world"):
                yield word
        return StreamingResponse(tokens(), status_code=200,
                                 headers={"content-type": "text/plain"})
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from forkric import chunked, errors
from forkric.logs import Logs
from forkric.runtime_api import (
    API_VERSION,
    ERROR_TYPE_HEADER,
    INVOCATION_ID_HEADER,
    RuntimeAPI,
    RuntimeAPIExit,
)

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("forkric")

STREAM_MARK = "__forkric_response_stream__"
ERROR_BODY_HEADER = "Lambda-Runtime-Function-Error-Body"  # a trailer, base64 of the error JSON
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
# Lambda's Runtime API, "Implementing response streaming in a custom runtime".
HTTP_INTEGRATION_TYPE = "application/vnd.awslambda.http-integration-response"
DEFAULT_TYPE = "application/octet-stream"
PRELUDE_SEPARATOR = b"\0" * 8
# Lambda's limit on a streamed response ("200 MB", Lambda quotas), taken as MiB.
STREAM_LIMIT = 200 * 1024 * 1024
# Go's net/http (the RIE's Runtime API) reads trailers only within its 4 KiB read buffer, else
# "suspiciously long trailer after chunked body" and the RIE ends the runtime: the error body's
# base64 and the type are kept well under it.
TRAILER_BODY_LIMIT = 3000
TYPE_LIMIT = 256

_for_all = False
F = TypeVar("F")


def response_stream(handler: F) -> F:
    """Mark a handler (a function or any callable) as streaming its response. Returns it as it
    is: the mark is an attribute, so the handler's name, signature and module stay its own."""
    setattr(handler, STREAM_MARK, True)
    return handler


def enable_for_all(enabled: bool) -> None:
    """FORKRIC_RESPONSE_STREAMING: every handler of this process streams a stream result. Set
    by the supervisor before the fork, so every worker (and every re-import) inherits it."""
    global _for_all
    _for_all = enabled


def wanted(handler: object) -> bool:
    return _for_all or bool(getattr(handler, STREAM_MARK, False))


@dataclass
class StreamingResponse:
    """A streamed body with the HTTP head a function URL answers with.

    `body`: an iterable, iterator or async iterable of bytes/str chunks, or one bytes/str
    (sent as one chunk). `status_code`, `headers` and `cookies` (Set-Cookie values) go in the
    HTTP-integration prelude that Lambda reads before the body; `content_type` is the stream's
    own type when no HTTP head is given (default application/octet-stream)."""

    body: Iterable[Any] | AsyncIterable[Any]
    status_code: int | None = None
    headers: Mapping[str, str] | None = None
    cookies: list[str] = field(default_factory=list)
    content_type: str | None = None

    @property
    def http(self) -> bool:
        return self.status_code is not None or bool(self.headers) or bool(self.cookies)

    def prelude(self) -> bytes:
        """The HTTP-integration prelude: JSON with statusCode, headers, cookies, then 8 NULs."""
        head = {"statusCode": self.status_code or 200, "headers": dict(self.headers or {}),
                "cookies": list(self.cookies)}
        return json.dumps(head, separators=(",", ":")).encode("utf-8") + PRELUDE_SEPARATOR


# Results that are values, not streams, even though Python can iterate them.
_WHOLE = (str, bytes, bytearray, memoryview)
_VALUES = (*_WHOLE, Mapping, list, tuple, set, frozenset)


def as_stream(result: Any) -> StreamingResponse | None:
    """The streaming response a marked handler's result stands for, or None for a plain value
    (which is then marshalled and posted whole, as today)."""
    if isinstance(result, StreamingResponse):
        return result
    if isinstance(result, AsyncIterable):
        return StreamingResponse(result)
    if isinstance(result, Iterable) and not isinstance(result, _VALUES):
        return StreamingResponse(result)
    return None


def content_type(response: StreamingResponse) -> str:
    if response.http:
        return HTTP_INTEGRATION_TYPE
    return response.content_type or DEFAULT_TYPE


def chunk_bytes(chunk: Any) -> bytes:
    """A yielded chunk as bytes: bytes-like as they are, str as UTF-8. Raises LambdaError
    (Runtime.MarshalError, as for an unserialisable result) for anything else."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise errors.LambdaError(
        errors.MARSHAL_ERROR,
        f"Unable to marshal response: a stream chunk of type {type(chunk).__name__} "
        f"is not bytes or str")


class Chunks:
    """The body's chunks, as bytes, one at a time: an async body is driven on this worker's
    own event loop, one step per chunk, so nothing is read ahead."""

    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, body: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        if isinstance(body, AsyncIterable):
            self._async = aiter(body)
        elif isinstance(body, _WHOLE):  # a body given whole is one chunk, not its items
            self._sync = iter((body,))
        else:
            self._sync = iter(body)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while True:
            if self._sync is not None:
                chunk = next(self._sync)
            else:
                assert self._async is not None
                try:
                    chunk = self._event_loop().run_until_complete(anext(self._async))
                except StopAsyncIteration:
                    raise StopIteration from None
            data = chunk_bytes(chunk)
            if data:  # an empty chunk would end the chunked body early: skipped
                return data

    def close(self) -> None:
        """Let the generator's `finally` run (the stream ended early, or the reader left)."""
        target: Any = self._sync if self._sync is not None else self._async
        try:
            if self._sync is not None and hasattr(target, "close"):
                target.close()
            elif self._async is not None and hasattr(target, "aclose"):
                self._event_loop().run_until_complete(target.aclose())
        except Exception:  # a failing cleanup cannot change an answer already given
            pass

    @classmethod
    def _event_loop(cls) -> asyncio.AbstractEventLoop:
        # One loop per worker process, made on first use (never before the fork).
        if cls._loop is None or cls._loop.is_closed():
            import asyncio  # only a worker that serves an async stream pays for it

            cls._loop = asyncio.new_event_loop()
        return cls._loop


def error_trailers(error: Mapping[str, Any]) -> dict[str, str]:
    """The trailers that report an error after the body started: its type, and its JSON body
    in base64 (Lambda's Runtime API: "Lambda-Runtime-Function-Error-Body - Base64-encoded
    information about the error"), cut to fit TRAILER_BODY_LIMIT (the whole error is logged)."""
    error_type = str(error.get("errorType") or "Unhandled")[:TYPE_LIMIT]
    return {ERROR_TYPE_HEADER: error_type,
            ERROR_BODY_HEADER: base64.b64encode(_fitted(error)).decode("ascii")}


def _fitted(error: Mapping[str, Any]) -> bytes:
    """The error's JSON within TRAILER_BODY_LIMIT once in base64: the stack trace dropped
    first, then the message (and type) halved until it fits."""
    fitted = dict(error)
    body = json.dumps(fitted, separators=(",", ":")).encode("utf-8")
    limit = TRAILER_BODY_LIMIT // 4 * 3  # base64: 4 bytes for each 3
    if len(body) > limit:
        fitted["stackTrace"] = []
        fitted["errorType"] = str(fitted.get("errorType") or "Unhandled")[:TYPE_LIMIT]
        body = json.dumps(fitted, separators=(",", ":")).encode("utf-8")
    while len(body) > limit:
        message = str(fitted.get("errorMessage", ""))
        fitted["errorMessage"] = message[:len(message) // 2]
        body = json.dumps(fitted, separators=(",", ":")).encode("utf-8")
        if not message:
            break
    return body


def too_large_error(request_id: str) -> dict[str, Any]:
    return errors.body(f"Response payload size exceeded maximum allowed payload size "
                       f"({STREAM_LIMIT} bytes).", "Function.ResponseSizeTooLarge", [],
                       request_id)


def send(api: RuntimeAPI, request_id: str, response: StreamingResponse,
         invocation_id: str | None, logs: Logs) -> None:
    """Post a streamed response: nothing is sent before the first chunk, so an error before it
    goes to /error as for any invocation; after it, an error goes in the trailers. At most one
    chunk is held at a time. Past STREAM_LIMIT bytes the stream ends with
    Function.ResponseSizeTooLarge. A connection that breaks mid-stream is logged (the Runtime API
    ended the invocation); RuntimeAPIExit propagates."""
    trailers: dict[str, str] = {}

    def fail(exc: BaseException) -> dict[str, Any]:
        error, _ = errors.from_exception(exc, request_id)
        logs.error(error)
        return error

    try:
        chunks = Chunks(response.body)
        first = next(chunks, b"")
    except Exception as exc:
        error, cause = errors.from_exception(exc, request_id)
        logs.error(error)
        api.post_error(request_id, error, cause, invocation_id)
        return

    def body() -> Generator[bytes, None, None]:
        if response.http:
            yield response.prelude()
        sent, pending = 0, first
        try:
            while pending:
                sent += len(pending)
                if sent > STREAM_LIMIT:
                    error = too_large_error(request_id)
                    logs.error(error)
                    trailers.update(error_trailers(error))
                    return
                yield pending
                pending = next(chunks, b"")
        except Exception as exc:
            trailers.update(error_trailers(fail(exc)))

    stream = body()
    try:
        status = post(api, request_id, stream, content_type(response), invocation_id,
                      lambda: trailers)
        if status == 413:
            log.error("forkric: the streamed response to %s is over the limit", request_id)
    except RuntimeAPIExit:
        raise
    except OSError as exc:
        log.error("forkric: the streamed response to %s was cut: %s", request_id, exc)
    finally:
        stream.close()
        chunks.close()


def post(api: RuntimeAPI, request_id: str, chunks: Iterable[bytes], content_type: str,
         invocation_id: str | None, trailers: Callable[[], dict[str, str]]) -> int:
    """`POST /runtime/invocation/{id}/response` in streaming mode: chunked, each chunk as
    `chunks` yields it, the error trailers declared up front and sent (or not) at the end; the
    connection closed after, as the Runtime API asks. Returns the status; OSError when the
    connection broke, RuntimeAPIExit on a 500."""
    path = f"{API_VERSION}/runtime/invocation/{request_id}/response"
    headers = {"Content-Type": content_type, RESPONSE_MODE_HEADER: "streaming",
               "Trailer": f"{ERROR_TYPE_HEADER}, {ERROR_BODY_HEADER}"}
    if invocation_id:
        headers[INVOCATION_ID_HEADER] = invocation_id
    status = chunked.post(api.conn, path, headers, chunks, trailers)
    if status == 500:
        raise RuntimeAPIExit(f"{path}: the Runtime API answered 500: the runtime must exit")
    return status
