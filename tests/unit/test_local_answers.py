"""How forkric local words the end of its whole runtime to the invokers it held (issue 15, item
6): as the supervisor words a worker's end, clean exits included."""

from __future__ import annotations

import json

import pytest

from forkric.local import answers


@pytest.mark.parametrize(("returncode", "message"), [
    (0, "RequestId: rid Error: Runtime exited without providing a reason"),
    (3, "RequestId: rid Error: Runtime exited with error: exit status 3"),
    (-9, "RequestId: rid Error: Runtime exited with error: signal: killed"),
])
def test_runtime_exit_wording(returncode: int, message: str) -> None:
    result = answers.runtime_exit("rid", returncode)
    assert json.loads(result.body) == {"errorMessage": message, "errorType": "Runtime.ExitError"}
    assert result.function_error
