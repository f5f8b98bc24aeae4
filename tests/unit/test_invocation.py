"""One invocation under forkric against awslambdaric's handle_event_request on the same handler,
event and headers: the posted body or error JSON, the X-Ray cause, and the error log line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from awslambdaric import bootstrap
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from awslambdaric.lambda_runtime_marshaller import to_json as aws_to_json

from forkric import invocation, logs, marshal
from forkric.runtime_api import Invocation

HANDLERS = '''
import decimal
import json
import logging
import os


class CustomError(Exception):
    pass


class NoMessage(Exception):
    pass


def ok_dict(event, context):
    return {"event": event, "n": 1}


def ok_decimal(event, context):
    return {"price": decimal.Decimal("1.50"), "nan": float("nan")}


def ok_text(event, context):
    return "naïve 😀"


def ok_bytes(event, context):
    return b"\\x00raw"


def ok_none(event, context):
    return None


def echo_event(event, context):
    return {"type": type(event).__name__, "repr": repr(event)}


def returns_set(event, context):
    return {1, 2}


def returns_object(event, context):
    return object()


def raises_value(event, context):
    raise ValueError("bad value: é")


def _deep(n):
    if n == 0:
        data = {}
        return data["missing"] + 1
    return _deep(n - 1)


def raises_deep(event, context):
    return _deep(3)


def raises_custom(event, context):
    raise CustomError("custom 😀")


def raises_empty(event, context):
    raise NoMessage()


def raises_chained(event, context):
    try:
        1 / 0
    except ZeroDivisionError as exc:
        raise RuntimeError("wrapped") from exc


def raises_multiline(event, context):
    raise ValueError("line one\\nline two\\n  indented")


def raises_json_message(event, context):
    raise Exception(json.dumps({"statusCode": 400, "body": "x"}))


def context_view(event, context):
    cc = context.client_context
    return {
        "repr": repr(context),
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id,
                     context.identity.cognito_identity_pool_id, repr(context.identity)],
        "client_context": None if cc is None else [
            cc.custom, cc.env, repr(cc.client),
            None if cc.client is None else [cc.client.installation_id, cc.client.app_title,
                                             cc.client.app_version_name,
                                             cc.client.app_version_code,
                                             cc.client.app_package_name]],
        "tenant_id": context.tenant_id,
        "w3c": context.w3c(),
        "remaining_positive": context.get_remaining_time_in_millis() > 0,
        "trace_env": os.environ.get("_X_AMZN_TRACE_ID", "<unset>"),
    }
'''

Write = Callable[[str, str], Path]


@dataclass
class Captured:
    kind: str = ""
    body: Any = None
    content_type: str = ""
    xray: Any = None
    log_lines: list[list[str]] = field(default_factory=list)


class FakeAwsClient:
    def __init__(self, captured: Captured) -> None:
        self.captured = captured
        self.marshaller = LambdaMarshaller()

    def post_invocation_result(self, invoke_id: str, result: Any, content_type: str,
                               invocation_id: Any = None) -> None:
        self.captured.kind = "result"
        self.captured.body = result if isinstance(result, bytes) else result.encode("utf-8")
        self.captured.content_type = content_type

    def post_invocation_error(self, invoke_id: str, error: str, xray: str,
                              invocation_id: Any = None) -> None:
        self.captured.kind = "error"
        self.captured.body = error
        self.captured.xray = xray


class CaptureSink:
    def __init__(self, captured: Captured) -> None:
        self.captured = captured

    def log(self, msg: str, frame_type: bytes | None = None) -> None:
        pass

    def log_error(self, lines: list[str]) -> None:
        self.captured.log_lines.append(list(lines))


def headers_of(values: dict[str, str | None]) -> dict[str, str]:
    """Headers as forkric's connection hands them over: lower-case names, UTF-8 values."""
    return {k.lower(): v for k, v in values.items() if v is not None}


DEADLINE = int(time.time() * 1000) + 600_000


def run_aws(function: Any, body: bytes, headers: dict[str, str | None]) -> Captured:
    captured = Captured()
    trace = headers.get("Lambda-Runtime-Trace-Id") or None  # the native client's NULL_IF_EMPTY
    bootstrap.update_xray_env_variable(trace)
    bootstrap.handle_event_request(
        FakeAwsClient(captured), function, "req-1", body,
        headers.get("Content-Type") or None,
        headers.get("Lambda-Runtime-Client-Context") or None,
        headers.get("Lambda-Runtime-Cognito-Identity") or None,
        headers.get("Lambda-Runtime-Invoked-Function-Arn", ""), DEADLINE,
        headers.get("Lambda-Runtime-Aws-Tenant-Id") or None, CaptureSink(captured))
    return captured


def run_ours(function: Any, body: bytes, headers: dict[str, str | None]) -> Captured:
    captured = Captured()
    log = logs.Logs({})
    log.sink = CaptureSink(captured)  # type: ignore[assignment]
    job = Invocation("req-1", DEADLINE, body, headers_of(headers))
    outcome = invocation.run(job, function, log)
    if outcome.error is None:
        captured.kind, captured.body, captured.content_type = (
            "result", outcome.body, outcome.content_type)
    else:
        captured.kind = "error"
        captured.body = marshal.to_json(outcome.error)
        captured.xray = marshal.to_json(outcome.xray_cause)
    return captured


@pytest.fixture
def module(code_dir: Write, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
                        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abc"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    code_dir("inv_handlers.py", HANDLERS)
    import inv_handlers  # type: ignore[import-not-found]

    yield inv_handlers
    os.environ.pop("_X_AMZN_TRACE_ID", None)


JSON = {"Content-Type": "application/json", "Lambda-Runtime-Invoked-Function-Arn": "arn:x"}

NAMES = ["ok_dict", "ok_decimal", "ok_text", "ok_bytes", "ok_none", "echo_event", "returns_set",
         "returns_object", "raises_value", "raises_deep", "raises_custom", "raises_empty",
         "raises_chained", "raises_multiline", "raises_json_message", "context_view"]


def assert_same(aws: Captured, ours: Captured) -> None:
    assert ours.kind == aws.kind
    assert ours.body == aws.body
    if aws.kind == "result":
        assert ours.content_type == aws.content_type
    else:
        assert json.loads(ours.xray) == json.loads(aws.xray)
    assert ours.log_lines == aws.log_lines


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("execution_env", [None, "AWS_Lambda_python3.12"])
def test_invocation_matches_awslambdaric(module: Any, name: str, execution_env: str | None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if execution_env:
        monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    else:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    function = getattr(module, name)
    body = '{"k": "é", "n": [1, 2.5]}'.encode()
    assert_same(run_aws(function, body, JSON), run_ours(function, body, JSON))


HEADER_CASES: list[dict[str, str | None]] = [
    {},
    {"Lambda-Runtime-Trace-Id": "Root=1-abc;Parent=def;Sampled=1"},
    {"Lambda-Runtime-Trace-Id": ""},
    {"Lambda-Runtime-Aws-Tenant-Id": "tenant-7"},
    {"Lambda-Runtime-Aws-Tenant-Id": ""},
    {"Lambda-Runtime-Cognito-Identity":
     '{"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}'},
    {"Lambda-Runtime-Cognito-Identity": "{}"},
    {"Lambda-Runtime-Cognito-Identity": "null"},
    {"Lambda-Runtime-Cognito-Identity": "not json"},
    {"Lambda-Runtime-Client-Context": json.dumps({
        "custom": {"a": "b"}, "env": {"platform": "x"},
        "client": {"installation_id": "i", "app_title": "t", "app_version_name": "n",
                   "app_version_code": "c", "app_package_name": "p"}})},
    {"Lambda-Runtime-Client-Context": json.dumps({"custom": {"only": 1}})},
    {"Lambda-Runtime-Client-Context": json.dumps({"client": {}})},
    {"Lambda-Runtime-Client-Context": "{}"},
    {"Lambda-Runtime-Client-Context": "null"},
    {"Lambda-Runtime-Client-Context": "{bad"},
    {"Lambda-Runtime-Client-Context": json.dumps({
        "custom": {"x": 1}, "w3c": {"traceparent": "00-abc-def-01", "tracestate": "k=v",
                                    "baggage": 5, "other": "dropped"}})},
    {"Lambda-Runtime-Client-Context": json.dumps({"w3c": "not a dict"})},
    {"Lambda-Runtime-Invoked-Function-Arn": ""},
]


@pytest.mark.parametrize("extra", HEADER_CASES, ids=range(len(HEADER_CASES)))
def test_context_and_headers_match_awslambdaric(module: Any, extra: dict[str, str | None]) -> None:
    headers = {**JSON, **extra}
    aws = run_aws(module.context_view, b"{}", headers)
    ours = run_ours(module.context_view, b"{}", headers)
    assert_same(aws, ours)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"{bad json", "application/json"),
    (b"", "application/json"),
    (b"raw text \xff", "text/plain"),
    (b'{"a": 1}', None),
])
def test_event_decoding_matches_awslambdaric(module: Any, body: bytes,
                                             content_type: str | None) -> None:
    headers = {**JSON, "Content-Type": content_type}
    assert_same(run_aws(module.echo_event, body, headers),
                run_ours(module.echo_event, body, headers))


def test_handler_error_body_shape(module: Any) -> None:
    ours = run_ours(module.raises_deep, b"{}", JSON)
    error = json.loads(ours.body)
    assert list(error) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == (
        "KeyError", "'missing'", "req-1")
    assert len(error["stackTrace"]) == 5  # raises_deep, then _deep four times
    assert all("inv_handlers.py" in entry for entry in error["stackTrace"])
    assert not any("^" in entry or "~" in entry for entry in error["stackTrace"])
    assert ours.log_lines[0][0] == "[ERROR] KeyError: 'missing'"


def test_marshal_error_body(module: Any) -> None:
    error = json.loads(run_ours(module.returns_set, b"{}", JSON).body)
    assert error == {"errorMessage": "Unable to marshal response: Object of type set is not "
                     "JSON serializable", "errorType": "Runtime.MarshalError",
                     "requestId": "req-1", "stackTrace": []}


def test_trace_id_env_follows_header(module: Any) -> None:
    run_ours(module.ok_none, b"{}", {**JSON, "Lambda-Runtime-Trace-Id": "Root=1"})
    assert os.environ["_X_AMZN_TRACE_ID"] == "Root=1"
    run_ours(module.ok_none, b"{}", JSON)
    assert "_X_AMZN_TRACE_ID" not in os.environ


def test_request_id_is_set_for_logs(module: Any) -> None:
    run_ours(module.ok_none, b"{}", {**JSON, "Lambda-Runtime-Aws-Tenant-Id": "t1"})
    assert (logs.request_id, logs.tenant_id) == ("req-1", "t1")


def test_error_json_matches_aws_to_json(module: Any) -> None:
    ours = run_ours(module.raises_custom, b"{}", JSON)
    assert ours.body == aws_to_json(json.loads(ours.body))
