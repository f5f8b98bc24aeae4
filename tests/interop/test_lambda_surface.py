"""Lambda's newer runtime surface, forkric against awslambdaric 4.2.2 under the real RIE.

The output streams (`with sys.stdout`, what `write` returns), the preview-runtime warning, the
Managed Instances start-up record, and SnapStart as the RIE serves it (it answers 404 to
`/runtime/restore/next`). Each case runs both runtimes on the same handler and environment.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import differential, rie
from tests.support.differential import Pair

pytestmark = pytest.mark.timeout(120)

PREVIEW = ("[WARNING]\t<time>\t\tLAMBDA_WARNING: This is a preview runtime version and should "
           "not be used for production workloads. For further information and to provide "
           "feedback, see https://docs.{}/lambda/latest/dg/lambda-runtimes.html\r")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return differential.task_root(tmp_path_factory.mktemp("surface") / "task")


def _pair(handler: str, task_dir: Path, **env: str) -> Iterator[Pair]:
    with differential.pair(handler, task_dir, differential.env_for(task_dir, **env)) as started:
        yield started


@pytest.fixture(scope="module")
def streams(task_dir: Path) -> Iterator[Pair]:
    yield from _pair("streams.handler", task_dir)


def test_stdout_as_a_context_manager(streams: Pair) -> None:
    exchange = streams.invoke({})
    assert exchange.forkric.comparable == exchange.peer.comparable, exchange.describe()
    assert exchange.forkric.log == exchange.peer.log, exchange.describe()
    seen = json.loads(exchange.forkric.body)
    assert seen == {"with_stdout_is_stdout": True, "stdout_write_returned": "None",
                    "stderr_write_returned": "None", "writelines_returned": "None",
                    "print_after_with": "None", "closed": False}
    assert "written inside with sys.stdout" in exchange.forkric.log


@pytest.mark.parametrize(("env", "domain"), [
    ({}, "aws.amazon.com"),
    ({"AWS_REGION": "cn-north-1"}, "amazonaws.cn"),
    ({"LAMBDA_DISABLE_PREVIEW_WARN": "1"}, None),
    ({"LAMBDA_DISABLE_PREVIEW_WARN": "0"}, None),  # any non-empty value
    ({"AWS_LAMBDA_LOG_FORMAT": "JSON"}, "json"),
    ({"AWS_LAMBDA_LOG_LEVEL": "ERROR"}, None),  # a WARNING record under an ERROR level
], ids=["global", "china", "disabled", "disabled_by_zero", "json", "level_error"])
def test_preview_runtime_warning(task_dir: Path, env: dict[str, str], domain: str | None) -> None:
    with differential.pair("results.handler", task_dir, differential.env_for(
            task_dir, AWS_EXECUTION_ENV="AWS_Lambda_python3.15", **env)) as pair:
        exchange = pair.invoke({"case": "int"})
    assert exchange.forkric.comparable == exchange.peer.comparable, exchange.describe()
    assert exchange.forkric.log == exchange.peer.log, exchange.describe()
    if domain is None:
        assert not any("LAMBDA_WARNING" in line for line in exchange.forkric.log)
    elif domain == "json":
        record = json.loads(exchange.forkric.log[0])
        assert (record["level"], record["logger"]) == ("WARNING", "root")
        assert record["message"].startswith("LAMBDA_WARNING: This is a preview runtime")
    else:
        assert exchange.forkric.log == [PREVIEW.format(domain)], exchange.describe()


def test_no_preview_warning_on_released_runtimes(task_dir: Path) -> None:
    with differential.pair("results.handler", task_dir, differential.env_for(
            task_dir, AWS_EXECUTION_ENV="AWS_Lambda_python3.14")) as pair:
        exchange = pair.invoke({"case": "int"})
    assert exchange.forkric.log == exchange.peer.log == [], exchange.describe()


def test_snap_start_under_the_rie(task_dir: Path) -> None:
    """The RIE answers 404 to /runtime/restore/next: both runtimes report a before-snapshot
    error (awslambdaric's client exception, its wording) and the invoker gets it with a 502."""
    with differential.pair("snapstart_hooks.handler", task_dir, differential.env_for(
            task_dir, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")) as pair:
        exchange = pair.invoke({})
    assert exchange.forkric.status == exchange.peer.status == 502, exchange.describe()
    ours, peer = (json.loads(a.body) for a in (exchange.forkric, exchange.peer))
    for body in (ours, peer):
        body.pop("stackTrace")  # each runtime's own frames
    assert ours == peer, exchange.describe()
    assert ours["errorType"] == "LambdaRuntimeClientError"
    assert "/2018-06-01/runtime/restore/next" in ours["errorMessage"]
    assert "Reason: '404'" in ours["errorMessage"]
    first = [next(line.split("\r")[0] for line in answer.log if line.startswith("[ERROR]"))
             for answer in (exchange.forkric, exchange.peer)]
    assert first[0] == first[1], exchange.describe()


# Lambda Managed Instances: the RIE in LMI mode starts /var/runtime/bootstrap at once.

needs_lmi = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/usr/bin/python3").exists(),
    reason="LMI mode needs root, unshare(1) and /usr/bin/python3")

APP = "def handler(event, context):\n    return 'ok'\n"


def _lmi_log(module: str, concurrency: int, **env: str) -> str:
    root = rie.readable_dir(f"lmi-{module}-")
    try:
        python = rie.system_python()
        rie.write_bootstrap(root / "runtime", python, module)
        (root / "task").mkdir()
        (root / "task" / "app.py").write_text(APP)
        full_env = rie.base_env(_HANDLER="app.handler", LAMBDA_TASK_ROOT="/var/task",
                                LAMBDA_RUNTIME_DIR="/var/runtime", **env)
        with rie.managed_instances(root / "runtime", root / "task", concurrency,
                                   full_env) as emulator:
            reply = rie.wait_ready(emulator, {})
            assert reply.status == 200, (reply, emulator.log())
            return emulator.log()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pool_records(log: str) -> list[dict[str, object]]:
    records = []
    for line in log.splitlines():
        start = line.find("{")
        if "runtime_worker_pool_initializing" in line and start >= 0:
            record = json.loads(line[start:])
            record.pop("timestamp")
            records.append(record)
    return records


@needs_lmi
@pytest.mark.parametrize("env", [
    {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"},
    {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"},
    {},
], ids=["json_debug", "json_info", "text_default"])
def test_worker_pool_initializing_record(env: dict[str, str]) -> None:
    logs = {module: _lmi_log(module, 3, **env) for module in differential.RUNTIMES}
    ours, peer = (_pool_records(logs[m]) for m in differential.RUNTIMES)
    assert ours == peer, logs
    if env.get("AWS_LAMBDA_LOG_LEVEL") == "DEBUG":
        assert ours == [{"level": "DEBUG", "message": {
            "event": "runtime_worker_pool_initializing", "workerCount": 3,
            "executionEnvironmentMaxConcurrency": 3}, "logger": "root", "requestId": ""}], logs
    else:
        assert ours == [], logs
