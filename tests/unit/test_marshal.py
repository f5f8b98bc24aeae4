"""forkric.marshal against awslambdaric's LambdaMarshaller, value for value, byte for byte."""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import math
from typing import Any

import pytest
from awslambdaric.lambda_runtime_exception import FaultException
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from awslambdaric.lambda_runtime_marshaller import to_json as aws_to_json

from forkric import errors, marshal

from .conftest import run_python

Point = collections.namedtuple("Point", "x y")


class Custom:
    pass


class WithJson:
    def for_json(self) -> dict[str, int]:  # simplejson would use it only with for_json=True
        return {"a": 1}


CORPUS: list[Any] = [
    {"a": 1, "b": [1, 2, 3]},
    [1, "two", 3.0, None, True, False],
    "plain",
    "",
    0,
    -17,
    2**70,
    1.5,
    1e300,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    decimal.Decimal("1.50"),
    decimal.Decimal("NaN"),
    decimal.Decimal("-NaN"),
    decimal.Decimal("sNaN"),
    decimal.Decimal("1E+2"),
    decimal.Decimal("-0.000"),
    decimal.Decimal("Infinity"),
    {"nested": [decimal.Decimal("2.50"), {"d": decimal.Decimal("1e-7")}]},
    "naïve café",
    "emoji 😀 and 中文",
    {"ключ": "значение"},
    "\u2028\u2029 separators",
    "control \x00\x01\x1f and \t\n quote \" backslash \\",
    Point(1, 2),
    {"p": Point(decimal.Decimal("1.10"), [Point(3, 4)])},
    (1, 2, (3,)),
    None,
    True,
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    {"b": b"utf-8 bytes nested"},
    [b"\xc3\xa9"],
    {"big": list(range(50))},
]

UNSERIALISABLE: list[Any] = [
    {1, 2},
    frozenset({1}),
    bytearray(b"abc"),
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.date(2024, 1, 2),
    Custom(),
    WithJson(),
    {"deep": [{"x": {3}}]},
    [b"\xff\xfe not utf-8"],
    {("tuple", "key"): 1},
    complex(1, 2),
    object,
]


def _aws(value: Any) -> tuple[bytes, str]:
    body, content_type = LambdaMarshaller().marshal_response(value)
    # awslambdaric's client encodes a str body as UTF-8 before posting it.
    return (body if isinstance(body, bytes) else body.encode("utf-8")), content_type


@pytest.fixture(params=[None, "AWS_Lambda_python3.12", "AWS_Lambda_python3.11",
                        "AWS_Lambda_python3.14"])
def execution_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    if request.param is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", request.param)
    marshal._encoder = None
    return request.param


@pytest.mark.parametrize("value", CORPUS, ids=lambda v: type(v).__name__)
def test_result_matches_awslambdaric(value: Any, execution_env: str | None) -> None:
    assert marshal.result(value) == _aws(value)


@pytest.mark.parametrize("value", CORPUS, ids=lambda v: type(v).__name__)
def test_to_json_matches_awslambdaric(value: Any, execution_env: str | None) -> None:
    assert marshal.to_json(value) == aws_to_json(value)


def test_non_ascii_is_escaped_before_python312(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    assert marshal.result("é😀") == (b'"\\u00e9\\ud83d\\ude00"', "application/json")


def test_non_ascii_is_raw_from_python312(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    assert marshal.result("é😀") == ('"é😀"'.encode(), "application/json")


def test_decimal_keeps_digits_and_nan_is_allowed() -> None:
    body, _ = marshal.result([decimal.Decimal("1.50"), decimal.Decimal("NaN"), math.inf])
    assert body == b"[1.50, NaN, Infinity]"


@pytest.mark.parametrize("value", [b"", b"raw \xff bytes", b'{"a": 1}'])
def test_bytes_are_sent_as_is(value: bytes) -> None:
    assert marshal.result(value) == (value, "application/unknown") == _aws(value)


@pytest.mark.parametrize("value", UNSERIALISABLE, ids=lambda v: type(v).__name__)
def test_marshal_error_matches_awslambdaric(value: Any, execution_env: str | None) -> None:
    with pytest.raises(FaultException) as aws:
        LambdaMarshaller().marshal_response(value)
    with pytest.raises(errors.LambdaError) as ours:
        marshal.result(value)
    assert ours.value.error_type == aws.value.exception_type == errors.MARSHAL_ERROR
    assert ours.value.message == aws.value.msg
    assert ours.value.trace == []
    assert ours.value.message.startswith("Unable to marshal response: ")


def test_marshal_error_wording_for_a_set() -> None:
    with pytest.raises(errors.LambdaError) as ours:
        marshal.result({1})
    assert ours.value.message == (
        "Unable to marshal response: Object of type set is not JSON serializable")


def test_circular_reference_is_a_marshal_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(FaultException) as aws:
        LambdaMarshaller().marshal_response(loop)
    with pytest.raises(errors.LambdaError) as ours:
        marshal.result(loop)
    assert ours.value.message == aws.value.msg


EVENTS: list[tuple[bytes, str | None]] = [
    (b'{"a": 1, "b": [1.5, null, true]}', "application/json"),
    (b'"just a string"', "application/json"),
    (b"12345678901234567890", "application/json"),
    (b"1.10", "application/json"),
    ('{"k": "é😀"}'.encode(), "application/json"),
    (b'{"k": "\\u00e9\\ud83d\\ude00"}', "application/json"),
    (b'{"dup": 1, "dup": 2}', "application/json"),
    (b"not json", "text/plain"),
    (b"\xff\xfe binary", "application/octet-stream"),
    (b'{"a": 1}', None),
    (b'{"a": 1}', ""),
    (b'{"a": 1}', "application/json; charset=utf-8"),
    (b'{"a": 1}', "APPLICATION/JSON"),
]

BAD_EVENTS: list[bytes] = [b"", b"{", b"not json", b'{"a": 1} trailing', b"\xff\xfe", b"[1,]",
                           b"{'single': 1}",
                           b"NaN", b"[Infinity, -Infinity]"]


@pytest.mark.parametrize(("body", "content_type"), EVENTS)
def test_event_matches_awslambdaric(body: bytes, content_type: str | None) -> None:
    expected = LambdaMarshaller().unmarshal_request(body, content_type)
    got = marshal.event(body, content_type)
    assert type(got) is type(expected)
    assert json.dumps(got, sort_keys=True, default=repr) == json.dumps(
        expected, sort_keys=True, default=repr)


@pytest.mark.parametrize("body", BAD_EVENTS)
def test_unmarshal_error_matches_awslambdaric(body: bytes) -> None:
    with pytest.raises(FaultException) as aws:
        LambdaMarshaller().unmarshal_request(body, "application/json")
    with pytest.raises(errors.LambdaError) as ours:
        marshal.event(body, "application/json")
    assert ours.value.error_type == aws.value.exception_type == errors.UNMARSHAL_ERROR
    assert ours.value.message == aws.value.msg
    assert ours.value.message.startswith("Unable to unmarshal input: ")


SUBPROCESS_CASE = """
    import decimal, json, sys
    from awslambdaric.lambda_runtime_client import BaseLambdaRuntimeClient
    from forkric import marshal
    values = ["é😀", {"k": "中文"}, decimal.Decimal("1.50"), [float("nan")]]
    aws = [BaseLambdaRuntimeClient.marshaller.marshal_response(v)[0] for v in values]
    ours = [marshal.result(v)[0].decode("utf-8") for v in values]
    print(json.dumps({"aws": aws, "ours": ours}))
"""


@pytest.mark.parametrize("env", [None, "AWS_Lambda_python3.12", "AWS_Lambda_python3.13"])
def test_execution_env_set_at_start_matches_awslambdaric_client(env: str | None) -> None:
    # awslambdaric builds its marshaller when its client module is imported; forkric on first
    # use. With AWS_EXECUTION_ENV set before the process starts both must agree.
    out = json.loads(run_python(SUBPROCESS_CASE, {"AWS_EXECUTION_ENV": env} if env else {}))
    assert out["ours"] == out["aws"]
    assert ("é" in out["ours"][0]) == (env is not None)
