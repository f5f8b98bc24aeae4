"""forkric.context.LambdaContext against awslambdaric.lambda_context.LambdaContext."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from awslambdaric import lambda_context as aws

from forkric import context as ours

ENV = {"AWS_LAMBDA_FUNCTION_NAME": "my-fn", "AWS_LAMBDA_FUNCTION_VERSION": "7",
       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/my-fn",
       "AWS_LAMBDA_LOG_STREAM_NAME": "2024/05/05/[7]0123"}

CLIENT_CONTEXTS: list[Any] = [
    None,
    {},
    {"custom": {"k": "v"}, "env": {"e": 1}},
    {"client": {"installation_id": "i", "app_title": "t", "app_version_name": "vn",
                "app_version_code": "vc", "app_package_name": "p", "extra": "ignored"}},
    {"client": None, "custom": None},
    {"client": {}},
    {"w3c": {"traceparent": "tp", "tracestate": "ts", "baggage": "b", "junk": "x"}},
    {"w3c": {"traceparent": 1, "baggage": ["not", "str"]}, "custom": {"a": 1}},
    {"w3c": None},
    {"custom": "é😀"},
]

IDENTITIES: list[Any] = [
    None,
    {},
    {"cognitoIdentityId": "id"},
    {"cognitoIdentityId": "id", "cognitoIdentityPoolId": "pool", "other": 1},
]


@pytest.fixture(params=[True, False], ids=["env-set", "env-unset"])
def function_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        if request.param:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


def view(ctx: Any) -> dict[str, Any]:
    cc = ctx.client_context
    client = None if cc is None else cc.client
    return {
        "aws_request_id": ctx.aws_request_id, "log_group_name": ctx.log_group_name,
        "log_stream_name": ctx.log_stream_name, "function_name": ctx.function_name,
        "memory_limit_in_mb": ctx.memory_limit_in_mb, "function_version": ctx.function_version,
        "invoked_function_arn": ctx.invoked_function_arn, "tenant_id": ctx.tenant_id,
        "identity": (ctx.identity.cognito_identity_id, ctx.identity.cognito_identity_pool_id,
                     repr(ctx.identity)),
        "client_context": None if cc is None else (cc.custom, cc.env, repr(cc)),
        "client": None if client is None else (
            client.installation_id, client.app_title, client.app_version_name,
            client.app_version_code, client.app_package_name, repr(client)),
        "w3c": ctx.w3c(),
        "repr": repr(ctx), "str": str(ctx),
    }


def make_both(client_context: Any, identity: Any, deadline: int = 0,
              arn: str | None = "arn:aws:lambda:x", tenant: str | None = None) -> tuple[Any, Any]:
    theirs = aws.LambdaContext("rid", copy.deepcopy(client_context), copy.deepcopy(identity),
                               deadline, arn, tenant)
    mine = ours.LambdaContext("rid", deadline, invoked_function_arn=arn,
                              client_context=copy.deepcopy(client_context),
                              identity=copy.deepcopy(identity), tenant_id=tenant)
    return theirs, mine


@pytest.mark.parametrize("client_context", CLIENT_CONTEXTS, ids=range(len(CLIENT_CONTEXTS)))
@pytest.mark.parametrize("identity", IDENTITIES, ids=range(len(IDENTITIES)))
def test_attributes_and_repr_match(function_env: None, client_context: Any,
                                   identity: Any) -> None:
    theirs, mine = make_both(client_context, identity, tenant="t-1")
    assert view(mine) == view(theirs)


@pytest.mark.parametrize(("arn", "tenant"), [(None, None), ("", ""), ("arn:é", "tenant-é")])
def test_optional_fields_match(function_env: None, arn: str | None, tenant: str | None) -> None:
    theirs, mine = make_both(None, None, arn=arn, tenant=tenant)
    assert view(mine) == view(theirs)


def test_w3c_is_popped_from_the_client_context() -> None:
    cc = {"custom": {}, "w3c": {"traceparent": "tp"}}
    mine = ours.LambdaContext("rid", 0, client_context=cc)
    assert mine.w3c() == {"traceparent": "tp"}
    assert "w3c" not in cc
    mine.w3c()["traceparent"] = "changed"
    assert mine.w3c() == {"traceparent": "tp"}


@pytest.mark.parametrize("identity", [[], 0, "", [1], 5])
def test_identity_that_is_not_an_object_fails_like_awslambdaric(identity: Any) -> None:
    with pytest.raises(AttributeError) as theirs:
        aws.LambdaContext("rid", None, identity, 0)
    with pytest.raises(AttributeError) as mine:
        ours.LambdaContext("rid", 0, identity=identity)
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("client_context", [[], 0, [1], {"client": []}, {"client": 3}])
def test_client_context_that_is_not_an_object_fails_like_awslambdaric(
        client_context: Any) -> None:
    with pytest.raises(AttributeError) as theirs:
        aws.LambdaContext("rid", copy.deepcopy(client_context), None, 0)
    with pytest.raises(AttributeError) as mine:
        ours.LambdaContext("rid", 0, client_context=copy.deepcopy(client_context))
    assert str(mine.value) == str(theirs.value)


def test_remaining_time() -> None:
    now = int(time.time() * 1000)
    mine = ours.LambdaContext("rid", now + 60_000)
    assert 50_000 < mine.get_remaining_time_in_millis() <= 60_000
    assert ours.LambdaContext("rid", now - 5_000).get_remaining_time_in_millis() == 0
    assert ours.LambdaContext("rid", 0).get_remaining_time_in_millis() == 0
    assert isinstance(mine.get_remaining_time_in_millis(), int)


class RecordingSink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None]] = []

    def log(self, msg: str, frame_type: bytes | None = None) -> None:
        self.messages.append((msg, frame_type))


class SinkHolder(logging.Handler):
    def __init__(self, sink: RecordingSink) -> None:
        super().__init__()
        self.log_sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        pass


@pytest.fixture
def root_handlers() -> Iterator[list[logging.Handler]]:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    yield root.handlers
    root.handlers[:] = saved


@pytest.mark.parametrize("msg", ["hello", 42, {"a": "é"}, None, "multi\nline"])
def test_log_goes_to_the_root_handlers_sink(root_handlers: list[logging.Handler],
                                            msg: Any) -> None:
    theirs_sink, mine_sink = RecordingSink(), RecordingSink()
    root_handlers.append(SinkHolder(theirs_sink))
    aws.LambdaContext("rid", None, None, 0).log(msg)
    root_handlers[:] = [SinkHolder(mine_sink)]
    ours.LambdaContext("rid", 0).log(msg)
    assert mine_sink.messages == theirs_sink.messages == [(str(msg), None)]


def test_log_without_sink_handler_writes_to_stdout(root_handlers: list[logging.Handler],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root_handlers.append(logging.NullHandler())
    aws.LambdaContext("rid", None, None, 0).log("theirs\n")
    ours.LambdaContext("rid", 0).log("mine\n")
    assert capsys.readouterr().out == "theirs\nmine\n"
