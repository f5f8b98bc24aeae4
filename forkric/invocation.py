"""One invocation: build the context, unmarshal the event, call the handler, marshal the result."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from forkric import errors, logs, marshal, streaming
from forkric.context import LambdaContext
from forkric.handler import Handler
from forkric.runtime_api import Invocation

TRACE_ENV = "_X_AMZN_TRACE_ID"


@dataclass
class Outcome:
    """What to post back: a response body, or an error body with its X-Ray cause."""

    body: bytes = b""
    content_type: str = "application/json"
    error: dict[str, Any] | None = None
    xray_cause: dict[str, Any] | None = None
    stream: streaming.StreamingResponse | None = None  # a streaming handler's response


def _json_header(value: str | None, name: str) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except Exception as exc:
        raise errors.LambdaError(
            errors.CONTEXT_UNMARSHAL_ERROR, f"Unable to parse {name} JSON: {exc}") from None


def _set_trace_id(trace_id: str | None) -> None:
    if trace_id is not None:
        os.environ[TRACE_ENV] = trace_id
    else:
        os.environ.pop(TRACE_ENV, None)


def make_context(invocation: Invocation) -> LambdaContext:
    header = invocation.header
    return LambdaContext(
        invocation.request_id,
        invocation.deadline_ms,
        invoked_function_arn=header("Lambda-Runtime-Invoked-Function-Arn"),
        client_context=_json_header(header("Lambda-Runtime-Client-Context"), "Client Context"),
        identity=_json_header(header("Lambda-Runtime-Cognito-Identity"), "Cognito Identity"),
        tenant_id=header("Lambda-Runtime-Aws-Tenant-Id") or None,
    )


def run(invocation: Invocation, handler: Handler, log: logs.Logs) -> Outcome:
    """Call the handler on one invocation; every failure becomes Lambda's error shape, logged."""
    # An empty trace or tenant header counts as absent, as awslambdaric's native client has it.
    logs.set_request(invocation.request_id,
                     invocation.header("Lambda-Runtime-Aws-Tenant-Id") or None)
    _set_trace_id(invocation.header("Lambda-Runtime-Trace-Id") or None)
    try:
        context = make_context(invocation)
        event = marshal.event(invocation.body, invocation.header("Content-Type"))
        result = handler(event, context)
        # A StreamingResponse asks for streaming itself (no handler returned one before).
        if streaming.wanted(handler) or isinstance(result, streaming.StreamingResponse):
            stream = streaming.as_stream(result)
            if stream is not None:  # its chunks are made, and sent, as they are read
                return Outcome(stream=stream)
        body, content_type = marshal.result(result)
        return Outcome(body, content_type)
    except Exception as exc:
        error, cause = errors.from_exception(exc, invocation.request_id)
        log.error(error)
        return Outcome(error=error, xray_cause=cause)
