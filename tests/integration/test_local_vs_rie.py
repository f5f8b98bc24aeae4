"""`forkric local` against the real AWS RIE (classic mode), the same runtime under both: where
the two should answer alike (success, function error, init error, timeout wording), they do."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import rie
from tests.support.local import local

APP = Path(__file__).parent / "local_app"
pytestmark = pytest.mark.timeout(120)


def both(handler: str, task: Path, tmp_path: Path, timeout: float = 3.0,
         payload: Any = None, headers: Mapping[str, str] | None = None,
         ) -> tuple[rie.Reply, rie.Reply, dict[str, Any]]:
    """One invocation through each service: (forkric local's answer, the RIE's, forkric
    local's /status after it)."""
    try:
        rie.binary()
    except Exception as exc:  # no network and no cache: nothing to compare with
        pytest.skip(f"the RIE is not available: {exc}")
    env = rie.base_env(AWS_LAMBDA_FUNCTION_TIMEOUT=f"{timeout:g}")
    with rie.classic([sys.executable, "-m", "forkric", handler], task, env=env,
                     log_path=tmp_path / "rie.log") as emulator:
        theirs = emulator.invoke(payload, headers=headers)
    with local(handler, task, workers=1, timeout=timeout, log_path=tmp_path / "local.log",
               wait_ready=False) as service:
        ours = service.invoke(payload, headers=headers)
        status = service.status()
    return ours, theirs, status


def without_request_id(reply: rie.Reply) -> dict[str, Any]:
    body = reply.json()
    body.pop("requestId", None)
    return body


def test_success_alike(tmp_path: Path) -> None:
    ours, theirs, _ = both("app.size", APP, tmp_path, payload=[1, 2, 3])
    assert (ours.status, ours.body) == (theirs.status, theirs.body) == (200, b'{"length": 3}')


def test_function_error_alike(tmp_path: Path) -> None:
    ours, theirs, _ = both("app.boom", APP, tmp_path)
    assert ours.status == theirs.status == 200
    assert without_request_id(ours) == without_request_id(theirs)
    assert ours.json()["errorType"] == "ValueError"
    # Lambda marks it with X-Amz-Function-Error; the classic RIE leaves that header out.
    assert ours.headers["x-amz-function-error"] == "Unhandled"


def test_init_error_alike(tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "broken.py").write_text("raise RuntimeError('import fails')\n")
    ours, theirs, _ = both("broken.handler", task, tmp_path)
    assert ours.status == theirs.status == 502
    assert ours.json() == theirs.json()
    assert (ours.json()["errorType"], ours.json()["requestId"]) == ("RuntimeError", "")


def test_timeout_wording_alike(tmp_path: Path) -> None:
    ours, theirs, _ = both("app.slow", APP, tmp_path, timeout=1, payload={"s": 5})
    assert ours.status == theirs.status == 200
    assert ours.body == theirs.body == b"Task timed out after 1.00 seconds"


@pytest.mark.parametrize("text", [
    '{"custom": {"a": "\\ud800"}}',  # a lone surrogate escape: stopped the runtime (issue 15)
    '{"custom": {"a": "x\x7fy"}}',  # DEL: refused after the answer started, then timed out
], ids=["lone-surrogate", "del"])
def test_a_client_context_reaches_the_handler_alike(tmp_path: Path, text: str) -> None:
    """Each used to stop the runtime or time out under `forkric local`; the RIE answers 200 and
    the handler sees the value: so must forkric local, with its runtime started once."""
    header = {"X-Amz-Client-Context": base64.b64encode(text.encode()).decode()}
    ours, theirs, status = both("app.ctx", APP, tmp_path, headers=header)
    assert ours.status == theirs.status == 200, (ours.body, theirs.body)
    assert ours.json()["custom"] == theirs.json()["custom"] == json.loads(text)["custom"]
    assert status["runtime"]["starts"] == 1 and status["invocations"]["timeouts"] == 0
