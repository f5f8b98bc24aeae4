"""`forkric local --function-url`: every path of the Invoke API's port that is not the Invoke
API is the function's URL, as a Lambda function URL serves it: the request becomes a payload
format 2.0 event, and the answer is read back as a function URL reads it.

- a streamed answer with the HTTP-integration prelude (`StreamingResponse` with a status,
  headers or cookies): that status, those headers and cookies, then the body as it streams;
- a streamed answer without it: 200 and the stream's content type;
- a buffered answer with a `statusCode`: API Gateway's v2 response shape (statusCode, headers,
  cookies, body, isBase64Encoded); any other buffered answer: 200, the JSON as the body;
- a function error or a timeout: 502 "Internal Server Error". An error after the body began
  cannot change the status: the body just ends (the console has the error).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from forkric.local.answers import Result
from forkric.local.asgi import Request, Send, value
from forkric.local.streams import Stream

PRELUDE_LIMIT = 64 * 1024
SEPARATOR = b"\0" * 8
HTTP_INTEGRATION_TYPE = "application/vnd.awslambda.http-integration-response"
_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded")


def event(request: Request, body: bytes, request_id: str) -> bytes:
    """The payload format 2.0 event of a function URL request."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        text = raw_value.decode("utf-8", "surrogateescape")
        headers[name] = f"{headers[name]},{text}" if name in headers else text
    cookies = headers.pop("cookie", "")
    content_type = headers.get("content-type", "")
    as_text = not body or any(kind in content_type for kind in _TEXT_TYPES)
    try:
        text_body = body.decode("utf-8") if as_text else None
    except UnicodeDecodeError:
        text_body = None
    now = time.time()
    client = request.scope.get("client") or ("127.0.0.1", 0)
    http = {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
            "sourceIp": client[0], "userAgent": headers.get("user-agent", "")}
    document: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": request.path,
        "rawQueryString": request.query, "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "forkric-local", "domainName":
            headers.get("host", ""), "domainPrefix": "forkric-local", "http": http,
            "requestId": request_id, "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000)},
        "isBase64Encoded": text_body is None,
    }
    if cookies:
        document["cookies"] = [c.strip() for c in cookies.split(";") if c.strip()]
    if request.query:
        document["queryStringParameters"] = {
            k: ",".join(v) for k, v in parse_qs(request.query, keep_blank_values=True).items()}
    if body:
        document["body"] = text_body if text_body is not None else \
            base64.b64encode(body).decode("ascii")
    return json.dumps(document).encode()


async def answer(send: Send, result: Result) -> None:
    """Send the function's answer as a function URL does (see the module's docstring)."""
    if result.stream is not None:
        await _streamed(send, result.stream)
        return
    if result.function_error or result.status != 200:
        await _whole(send, 502, [(b"content-type", b"text/plain")], b"Internal Server Error")
        return
    status, headers, body = _buffered(result)
    await _whole(send, status, headers, body)


async def _whole(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


def _head(document: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]]]:
    headers = [(str(k).lower().encode("latin-1", "replace"), value(str(v)))
               for k, v in (document.get("headers") or {}).items()]
    headers += [(b"set-cookie", value(str(c))) for c in document.get("cookies") or []]
    return int(document.get("statusCode") or 200), headers


def _buffered(result: Result) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    try:
        document = json.loads(result.body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or "statusCode" not in document:
        return 200, [(b"content-type", value(result.content_type))], result.body
    status, headers = _head(document)
    body = document.get("body") or ""
    raw = base64.b64decode(body) if document.get("isBase64Encoded") else str(body).encode()
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    return status, headers, raw


async def _streamed(send: Send, stream: Stream) -> None:
    chunks = stream.chunks()
    status, headers, first = 200, [(b"content-type", value(stream.content_type))], b""
    if stream.content_type == HTTP_INTEGRATION_TYPE:
        head = await _prelude(chunks)
        if head is None:
            stream.abandon()
            await _whole(send, 502, [(b"content-type", b"text/plain")], b"Internal Server Error")
            return
        status, headers, first = head
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if first:
        await send({"type": "http.response.body", "body": first, "more_body": True})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _prelude(
        chunks: AsyncIterator[bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The status and headers of the HTTP-integration prelude, and the body bytes read with
    it; None for a missing or bad prelude (then nothing of the answer can be trusted)."""
    seen = b""
    async for chunk in chunks:
        seen += chunk
        head, separator, rest = seen.partition(SEPARATOR)
        if separator:
            try:
                return (*_head(json.loads(head)), rest)
            except (ValueError, TypeError, AttributeError):
                break
        if len(seen) > PRELUDE_LIMIT:
            break
    return None
