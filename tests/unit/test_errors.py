"""forkric.errors against awslambdaric's make_error, make_xray_fault and stack trace format."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from awslambdaric import bootstrap

import forkric.errors
from forkric import errors

Write = Callable[[str, str], Path]


@pytest.mark.parametrize(("message", "error_type", "trace", "request_id"), [
    ("m", "T", ["a\n"], "rid"),
    ("", "", [], ""),
    (None, None, [], ""),
    ("é😀", "Custom", ["  File \"x\", line 1, in f\n"], "r"),
])
def test_body_matches_make_error(message: Any, error_type: Any, trace: list[str],
                                 request_id: str) -> None:
    assert errors.body(message, error_type, trace, request_id) == bootstrap.make_error(
        message, error_type, trace, request_id)


def test_error_types() -> None:
    from awslambdaric.lambda_runtime_exception import FaultException as F

    assert (errors.MALFORMED_HANDLER_NAME, errors.IMPORT_MODULE_ERROR, errors.HANDLER_NOT_FOUND,
            errors.USER_CODE_SYNTAX_ERROR, errors.BUILT_IN_MODULE_CONFLICT, errors.MARSHAL_ERROR,
            errors.UNMARSHAL_ERROR, errors.CONTEXT_UNMARSHAL_ERROR) == (
        F.MALFORMED_HANDLER_NAME, F.IMPORT_MODULE_ERROR, F.HANDLER_NOT_FOUND,
        F.USER_CODE_SYNTAX_ERROR, F.BUILT_IN_MODULE_CONFLICT, F.MARSHAL_ERROR,
        F.UNMARSHAL_ERROR, F.LAMBDA_CONTEXT_UNMARSHAL_ERROR)


USER_CODE = '''
def level3(x):
    return {"a": 1}["b"] + x


def level2(x):
    return level3(x) * 2


def user(x):
    return [level2(x)]
'''


def test_from_exception_matches_awslambdaric(code_dir: Write) -> None:
    code_dir("err_user.py", USER_CODE)
    import err_user  # type: ignore[import-not-found]

    try:
        err_user.user(1)
    except KeyError as exc:
        tb = exc.__traceback__
        assert tb is not None
        # Both runtimes see a traceback that starts at the user's function.
        exc.__traceback__ = tb.tb_next
        tuples = bootstrap.extract_traceback(exc.__traceback__)
        expected = bootstrap.make_error(str(exc), "KeyError", traceback.format_list(tuples), "r")
        expected_xray = bootstrap.make_xray_fault("KeyError", str(exc), os.getcwd(), tuples)
        got, got_xray = errors.from_exception(exc, "r")
    assert got == expected
    assert got_xray == expected_xray
    assert len(got["stackTrace"]) == 3
    assert got["stackTrace"][2].endswith('return {"a": 1}["b"] + x\n')


def test_trace_has_no_position_markers(code_dir: Write) -> None:
    code_dir("err_markers.py", "def f():\n    return 1 + {}['x']\n")
    import err_markers  # type: ignore[import-not-found]

    with pytest.raises(KeyError) as info:
        err_markers.f()
    got, _ = errors.from_exception(info.value)
    assert all(not set(line.strip()) <= {"^", "~"}
               for entry in got["stackTrace"] for line in entry.splitlines())


def test_runtime_frames_are_left_out() -> None:
    # A traceback whose leading frames are forkric's own: only the user's frames remain.
    def user() -> None:
        raise ValueError("x")

    namespace: dict[str, Any] = {"user": user}
    code = compile("def call():\n    user()\n", forkric.errors.__file__, "exec")
    exec(code, namespace)
    with pytest.raises(ValueError) as info:
        namespace["call"]()
    exc = info.value
    assert exc.__traceback__ is not None
    exc.__traceback__ = exc.__traceback__.tb_next  # from the fake forkric frame on
    frames = errors.user_frames(exc.__traceback__)
    assert [f.name for f in frames] == ["user"]


def test_only_runtime_frames_are_all_kept() -> None:
    code = compile("def call():\n    raise ValueError('in runtime')\n",
                   forkric.errors.__file__, "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    with pytest.raises(ValueError) as info:
        namespace["call"]()
    assert info.value.__traceback__ is not None
    frames = errors.user_frames(info.value.__traceback__.tb_next)
    assert [f.name for f in frames] == ["call"]


def test_lambda_error_xray_cause_matches_awslambdaric() -> None:
    exc = errors.LambdaError(errors.MARSHAL_ERROR, "Unable to marshal response: x")
    got, xray = errors.from_exception(exc, "rid")
    assert got == bootstrap.make_error(exc.message, exc.error_type, None, "rid")
    assert xray == bootstrap.make_xray_fault("LambdaValidationError", exc.message,
                                             os.getcwd(), [])


def test_lambda_error_keeps_its_trace() -> None:
    exc = errors.LambdaError(errors.USER_CODE_SYNTAX_ERROR, "m", ['  File "f" Line 1\n    x'])
    got, _ = errors.from_exception(exc)
    assert got["stackTrace"] == ['  File "f" Line 1\n    x']
    assert got["requestId"] == ""


def test_xray_paths_are_unique() -> None:
    def again(n: int) -> None:
        if n:
            again(n - 1)
        raise RuntimeError("deep")

    with pytest.raises(RuntimeError) as info:
        again(3)
    _, xray = errors.from_exception(info.value)
    assert xray["paths"] == [__file__] or sorted(xray["paths"]) == sorted(
        {__file__, sys.modules[__name__].__file__})
    assert [s["label"] for s in xray["exceptions"][0]["stack"]].count("again") == 4
