"""A streamed response on its way from the worker's POST to the invoker.

The worker's chunks are queued as they arrive and taken by whoever answers the invoker (the
event stream of InvokeWithResponseStream, a function URL, or the buffered Invoke API, which
gathers them). Past `HIGH_WATER` bytes queued, the POST stops reading: the worker's send then
blocks on TCP, so a slow reader slows the handler rather than filling memory (as on Lambda).
A reader that leaves abandons the stream: what comes after is read and dropped, so the worker
is never left blocked on a reader that is gone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator

from forkric.local import answers
from forkric.local.answers import Result

HIGH_WATER = 1024 * 1024
# Lambda's limit on a streamed response (see forkric.streaming.STREAM_LIMIT).
STREAM_LIMIT = 200 * 1024 * 1024
ERROR_TYPE_TRAILER = b"lambda-runtime-function-error-type"
ERROR_BODY_TRAILER = b"lambda-runtime-function-error-body"


class Stream:
    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.outcome: Result | None = None  # set once: success, or the error that ended it
        self.received = 0  # bytes the worker sent
        self.abandoned = False
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, chunk: bytes) -> None:
        """Queue one chunk of the body; waits while the reader is behind."""
        if self.abandoned or self.outcome is not None:
            return
        self._chunks.append(chunk)
        self._queued += len(chunk)
        self._readable.set()
        if self._queued > HIGH_WATER:
            self._writable.clear()
            await self._writable.wait()

    def end(self, outcome: Result) -> None:
        """The stream is over (the first end counts): the reader gets what is queued, then
        the outcome."""
        if self.outcome is None:
            self.outcome = outcome
        self._readable.set()
        self._writable.set()

    def abandon(self) -> None:
        """The reader left: drop what is queued and all that comes."""
        self.abandoned = True
        self._chunks.clear()
        self._queued = 0
        self._writable.set()
        self._readable.set()  # a reader waiting for the next chunk ends now

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks as they come, until the stream ends."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._queued -= len(chunk)
                if self._queued <= HIGH_WATER:
                    self._writable.set()
                yield chunk
            elif self.outcome is not None or self.abandoned:
                return
            else:
                self._readable.clear()
                await self._readable.wait()


def outcome_of(trailers: dict[bytes, bytes], request_id: str) -> Result:
    """What the stream's trailers say: an error (type, and base64 JSON body), or success."""
    error_type = trailers.get(ERROR_TYPE_TRAILER)
    if error_type is None:
        return Result(200)
    body = b""
    with contextlib.suppress(binascii.Error, ValueError):
        body = base64.b64decode(trailers.get(ERROR_BODY_TRAILER, b""), validate=True)
    if not body:
        body = answers.error_body(error_type.decode("utf-8", "replace"), "")
    return answers.function_error(body)


def too_large() -> Result:
    return answers.function_error(answers.error_body(
        "Function.ResponseSizeTooLarge",
        f"Response payload size exceeded maximum allowed payload size ({STREAM_LIMIT} bytes)."))


def error_fields(result: Result) -> tuple[str, str] | None:
    """ErrorCode and ErrorDetails of a failed invocation (None when it succeeded): the error's
    type and its message, or 'Unhandled' and the body as text (a timeout's)."""
    if not result.function_error:
        return None
    text = result.body.decode("utf-8", "replace")
    try:
        error = json.loads(text)
    except ValueError:  # the text of a timeout
        return ("Sandbox.Timedout" if text.startswith("Task timed out") else "Unhandled"), text
    if isinstance(error, dict) and error.get("errorType"):
        return str(error["errorType"]), str(error.get("errorMessage", ""))
    return "Unhandled", text
