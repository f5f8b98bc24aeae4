"""Handler exceptions: `{"case": NAME}`. The error JSON (type, message, user-only stack trace)
and the `[ERROR]` log line must match awslambdaric's."""

from __future__ import annotations

from typing import Any

import failures_helper


class CustomError(Exception):
    pass


class WithRepr(Exception):
    def __str__(self) -> str:
        return "custom __str__ with\nnewline"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() fails")


def _chained() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise RuntimeError("wrapped failure") from exc


def handler(event: Any, context: Any) -> Any:
    case = event["case"]
    if case == "value_error":
        raise ValueError("bad value")
    if case == "custom":
        raise CustomError("custom failure")
    if case == "no_message":
        raise CustomError()
    if case == "non_ascii":
        raise ValueError("échec — 失敗 \U0001f4a5")
    if case == "chained":
        _chained()
    if case == "nested_module":
        failures_helper.deep(3)
    if case == "lambda":
        fn = lambda x: 1 / x  # noqa: E731
        return fn(0)
    if case == "multiline":
        raise WithRepr()
    if case == "assertion":
        assert event.get("never"), "assertion message"
    if case == "recursion":
        def again(n: int) -> int:
            return again(n + 1)
        return again(0)
    if case == "unprintable":
        raise Unprintable()
    if case == "over_the_payload_limit":
        raise ValueError("x" * (7 * 1024 * 1024))
    if case == "non_str_args":
        raise ValueError(1, {"k": "v"})
    raise LookupError(f"unknown case {case!r}")
