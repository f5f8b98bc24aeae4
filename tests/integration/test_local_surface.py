"""`forkric local` and Lambda's newer Invoke API surface: invalid JSON refused before any
invocation, tenant ids carried to the handler and its JSON logs, the metadata endpoint, and
SnapStart's snapshot phase (`--snap-start`) with one worker and with four."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime import _serve_both
from tests.support import differential
from tests.support.local import Local, local, wait_for
from tests.support.rie import Reply

pytestmark = pytest.mark.timeout(120)
SNAP_ORDER = ["before:registered-second:cache!", "before:registered-first",
              "after:registered-first", "after:registered-second:db"]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return differential.task_root(tmp_path_factory.mktemp("local-surface") / "task")


def tail(reply: Reply) -> str:
    return base64.b64decode(reply.headers["x-amz-log-result"]).decode()


# Invalid JSON at the Invoke API.

@pytest.mark.parametrize(("payload", "detail"), [
    (b"{not json", "Expecting property name enclosed in double quotes"),
    (b"hello", "Expecting value"),
    (b'{"a": 1,}', "Expecting property name"),
    (b'{"a": NaN}', "Non-standard token 'NaN'"),
    (b"[Infinity]", "Non-standard token 'Infinity'"),
    (b"\xff\xfe\xfd", ""),
    (b'{"a": 1} {"b": 2}', "Extra data"),
], ids=["unquoted_key", "bare_word", "trailing_comma", "nan", "infinity", "not_utf8",
        "two_documents"])
@pytest.mark.parametrize("kind", ["RequestResponse", "Event"])
def test_invalid_json_is_refused_without_invoking(task_dir: Path, payload: bytes, detail: str,
                                                  kind: str, request: pytest.FixtureRequest
                                                  ) -> None:
    service: Local = request.getfixturevalue("echo_service")
    before = service.status()["invocations"]["accepted"]
    reply = service.invoke(raw=payload, headers={"X-Amz-Invocation-Type": kind})
    assert reply.status == 400, reply
    assert reply.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    message = reply.json()["message"]
    assert message.startswith("Could not parse request body into json: Could not parse payload "
                              "into json: "), message
    assert detail in message
    assert service.status()["invocations"]["accepted"] == before  # nothing reached the queue


def test_an_empty_payload_is_invoked_with_an_empty_object(echo_service: Local) -> None:
    """Lambda invokes a function called without a payload with the event {}; before, the
    empty body went on and awslambdaric's unmarshal failed it (Runtime.UnmarshalError)."""
    reply = echo_service.invoke(raw=b"")
    assert reply.status == 200, reply
    assert "x-amz-function-error" not in reply.headers, reply
    assert json.loads(reply.body) == {"type": "dict", "repr": "{}"}


@pytest.mark.parametrize("payload", [b"", b"null", b"1e400", b'"\\ud800"', b'{"dup":1,"dup":2}',
                                     b" [1, 2] \n"])
def test_valid_json_edge_cases_are_invoked(payload: bytes, request: pytest.FixtureRequest
                                           ) -> None:
    service: Local = request.getfixturevalue("echo_service")
    reply = service.invoke(raw=payload)
    assert reply.status == 200, reply
    assert "x-amzn-errortype" not in reply.headers


@pytest.fixture(scope="module")
def echo_service(task_dir: Path) -> Any:
    with local("echo.handler", task_dir, workers=1) as running:
        yield running


def test_the_runtime_inherits_no_descriptors(echo_service: Local) -> None:
    """The service's event loop (uvloop) leaks fds into children it spawns; the runtime closes
    them before it starts, as on Lambda, where a runtime inherits none. Before, forkric's
    fork-safety scan found the leaked stdout socketpair ends and imported per worker."""
    echo_service.invoke({})
    assert "fork safety" not in echo_service.log(), echo_service.log()


# Tenants.

@pytest.fixture(scope="module")
def json_service(task_dir: Path) -> Any:
    with local("contexts.handler", task_dir, workers=1,
               env={"AWS_LAMBDA_LOG_FORMAT": "JSON"}) as running:
        yield running


def test_tenant_id_reaches_the_context(json_service: Local) -> None:
    reply = json_service.invoke({}, headers={"X-Amz-Tenant-Id": "tenant-Ä 1"})
    assert reply.status == 200, reply
    assert reply.json()["tenant_id"] == "tenant-Ä 1"
    assert json_service.invoke({}).json()["tenant_id"] is None


def test_tenant_id_in_json_logs(task_dir: Path) -> None:
    with local("logging_cases.handler", task_dir, workers=1,
               env={"AWS_LAMBDA_LOG_FORMAT": "JSON"}) as service:
        reply = service.invoke({"case": "levels"}, headers={"X-Amz-Tenant-Id": "blue",
                                                            "X-Amz-Log-Type": "Tail"})
        plain = service.invoke({"case": "levels"}, headers={"X-Amz-Log-Type": "Tail"})
    records = [json.loads(line) for line in tail(reply).splitlines() if line.startswith("{")]
    assert records, tail(reply)
    assert {record.get("tenantId") for record in records} == {"blue"}
    assert all("tenantId" not in json.loads(line)
               for line in tail(plain).splitlines() if line.startswith("{"))


def test_tenant_id_in_json_logs_as_awslambdaric(task_dir: Path) -> None:
    """The runtime side, against awslambdaric through the Runtime API double: the same frames."""
    seen = _serve_both(task_dir, "logging_cases.handler",
                       [({"case": "levels"}, {"Lambda-Runtime-Aws-Tenant-Id": "blue"})],
                       {"AWS_LAMBDA_LOG_FORMAT": "JSON"}, telemetry=True)
    ours = differential.without_start_line_frames(seen["forkric"][1])
    assert ours == seen["awslambdaric"][1]
    assert all(json.loads(text).get("tenantId") == "blue" for _, text in ours), ours


# The metadata endpoint.

def test_metadata_endpoint(task_dir: Path) -> None:
    with local("metadata_reader.handler", task_dir, workers=1,
               env={"AWS_REGION": "eu-central-1"}) as service:
        seen = service.invoke({}).json()
    assert seen["with_token"] == {"status": 200, "body": {"AvailabilityZoneID": "euc1-az1"},
                                  "cache_control": "private, max-age=43200, immutable"}
    for refused in ("without_token", "wrong_token", "token_without_bearer"):
        assert seen[refused]["status"] == 401, seen
        assert seen[refused]["cache_control"] is None


# SnapStart.

def _invoke_all(service: Local, count: int) -> list[Reply]:
    replies: list[Reply] = []
    threads = [threading.Thread(target=lambda: replies.append(service.invoke({})))
               for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return replies


@pytest.mark.parametrize("mode", ["once", "per-worker"])
@pytest.mark.parametrize("workers", [1, 4])
def test_snap_start(task_dir: Path, workers: int, mode: str) -> None:
    """One snapshot for the environment, whatever the worker count. Importing once, the hooks
    run once, in the supervisor, and every worker is forked from the restored state; importing
    per worker, each worker also runs the hooks its own import registered, in the same order."""
    with local("snapstart_hooks.handler", task_dir, "--snap-start", workers=workers,
               env={"FORKRIC_IMPORT_MODE": mode}) as service:
        results = [reply.json() for reply in _invoke_all(service, workers * 3)]
        log = service.log()
    assert log.count("snapshot taken") == 1, log
    assert log.count("restored; the after-restore hooks") == 1, log
    assert log.index("snapshot taken") < log.index("restored;")
    for result in results:
        assert [name for name, _ in result["ran"]] == SNAP_ORDER, result
        ran_in = result["ppid"] if mode == "once" else result["pid"]
        assert {pid for _, pid in result["ran"]} == {ran_in}, result
    assert 1 <= len({r["pid"] for r in results}) <= workers


def test_snap_start_after_restore_error(task_dir: Path) -> None:
    with local("snapstart_hooks.handler", task_dir, "--snap-start", workers=2,
               env={"SNAP_FAIL": "after"}, wait_ready=False) as service:
        reply = service.invoke({})
        log = service.log()
    assert reply.status == 400, reply
    assert reply.headers["x-amzn-errortype"] == "SnapStartException"
    assert reply.json()["message"].startswith("The afterRestore() runtime hook encountered")
    assert "an after-restore hook failed" in log
    assert "could not reconnect after the restore" in log


def test_snap_start_before_snapshot_error(task_dir: Path) -> None:
    with local("snapstart_hooks.handler", task_dir, "--snap-start", workers=2,
               env={"SNAP_FAIL": "before"}, wait_ready=False) as service:
        reply = service.invoke({})
    assert reply.status == 502, reply
    assert reply.json()["errorType"] == "ValueError"
    assert reply.json()["errorMessage"] == "flush failed before the snapshot"


def test_no_snapshot_without_the_flag(task_dir: Path) -> None:
    with local("snapstart_hooks.handler", task_dir, workers=1) as service:
        result = service.invoke({}).json()
        log = service.log()
    assert result["ran"] == []
    assert "snapshot taken" not in log
    wait_for(lambda: True)
