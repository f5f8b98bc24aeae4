"""`forkric local` as a user meets it (issue 13): readiness, broken handlers, reload, a quiet
console under failing load, and the command line's errors. Real processes, real files."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.local import Local, local, wait_for

pytestmark = pytest.mark.timeout(180)


def forkric(*args: str, cwd: Path | None = None, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "forkric", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Readiness (item 6).

SLOW_IMPORT = """\
import os, time
while not os.path.exists(os.environ["RELEASE_IMPORT"]):
    time.sleep(0.02)

def handler(event, context):
    return "served"
"""


def test_ready_only_once_every_worker_polls(tmp_path: Path) -> None:
    """An import that lasts until the test lets it end: /status says not ready, a client
    waiting for readiness waits, then one line says ready and the first call is quick."""
    task = tmp_path / "task"
    write(task / "slow.py", SLOW_IMPORT)
    release = tmp_path / "release"
    with local("slow.handler", task, workers=2, wait_ready=False, log_path=tmp_path / "log",
               env={"RELEASE_IMPORT": str(release)}) as service:
        assert service.status()["ready"] is False
        waiting = subprocess.Popen(
            [sys.executable, "-m", "forkric", "invoke", "--port", str(service.port),
             "--wait-ready", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "waiting up to 60 s" in (waiting.stderr.readline() if waiting.stderr
                                                   else ""), 30, "the client says it waits")
        assert waiting.poll() is None  # still waiting: the import has not finished
        # Found by trying: forkric load told a user whose service was importing to start it.
        short = forkric("load", "--port", str(service.port), "--headless", "--wait-ready", "0.5")
        assert short.returncode == 1, short.stderr
        assert short.stderr.splitlines()[-1] == (
            f"forkric load: 127.0.0.1:{service.port} was not ready after 0.5 s: its workers are "
            "still starting (importing the handler; a slow import needs a longer --wait-ready)")
        # Set by its variable, the wait is named so (the flag was, to a user who gave none).
        by_env = subprocess.run(
            [sys.executable, "-m", "forkric", "invoke", "--port", str(service.port)],
            capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("FORKRIC_")}
            | {"FORKRIC_WAIT_READY_S": "0.5"})
        assert by_env.returncode == 1, by_env.stderr
        assert by_env.stderr.splitlines()[-1].endswith(
            "a slow import needs a longer FORKRIC_WAIT_READY_S)"), by_env.stderr
        assert forkric("load", "--port", "1", "--headless", "--wait-ready", "0.2"
                       ).stderr.splitlines()[-1] == (
            "forkric load: 127.0.0.1:1 was not ready after 0.2 s: Connection refused (is forkric "
            "local running there?)")
        assert "ready:" not in service.log()
        release.touch()
        out, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, out
        assert '"served"' in out
        assert service.status()["ready"] is True
        log = service.log()
    ready_lines = [line for line in log.splitlines() if line.startswith("forkric local: ready:")]
    assert len(ready_lines) == 1
    assert ready_lines[0].startswith("forkric local: ready: 2 worker(s) polling, ")


# A broken handler (item 5).

BROKEN = {
    "typo": ("app.handlr", {"app.py": "def handler(event, context):\n    return 1\n"},
             "Runtime.HandlerNotFound: Handler 'handlr' missing on module 'app'"),
    "missing module": ("app.handler", {"app.py": "import no_such_dependency\n"},
                       "Runtime.ImportModuleError: Unable to import module 'app': No module "
                       "named 'no_such_dependency'"),
    "syntax error": ("app.handler", {"app.py": "def handler(event, context):\n    return 1 +\n"},
                     "Runtime.UserCodeSyntaxError: Syntax error in module 'app': invalid "
                     "syntax (app.py, line 2)"),
    "raises at import": ("app.handler", {"app.py": "raise ValueError('no config')\n"},
                         "ValueError: no config"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_handler_is_one_line_at_start_then_502_logged_once(tmp_path: Path,
                                                                    case: str) -> None:
    handler, files, expected = BROKEN[case]
    for name, text in files.items():
        write(tmp_path / "task" / name, text)
    with local(handler, tmp_path / "task", workers=2, wait_ready=False,
               log_path=tmp_path / "log") as service:
        wait_for(lambda: "init error" in service.log(), 30, "the init error line")
        replies = [service.invoke({}) for _ in range(4)]
        status = service.status()
        log = service.log()
    lines = log.splitlines()
    first = next(i for i, line in enumerate(lines) if "rror" in line)
    assert lines[first] == f"forkric local: init error: {expected}"
    assert "LAMBDA_WARNING" not in log
    assert "Traceback (most recent call last):\n\n" not in log + "\n"
    assert not log.rstrip().endswith("Traceback (most recent call last):")
    assert log.count("init error: ") == 1  # five initialisations, one line
    for reply in replies:
        assert reply.status == 502
        body = reply.json()
        assert f"{body['errorType']}: {body['errorMessage']}" == expected
        assert body["requestId"] == ""
    assert status["ready"] is False and status["runtime"]["init_failed"] is True


def test_a_handler_that_is_not_callable_is_said_at_start(tmp_path: Path) -> None:
    write(tmp_path / "task" / "app.py", "handler = {'not': 'a function'}\n")
    with local("app.handler", tmp_path / "task", workers=1, log_path=tmp_path / "log") as service:
        log_at_start = service.log()
        reply = service.invoke({})
    assert ("forkric: the handler app.handler is not callable (it is of type dict): every "
            "invocation will fail with TypeError, as under awslambdaric") in log_at_start
    # As awslambdaric: the handler is called, and the call fails.
    assert reply.status == 200 and reply.headers["x-amz-function-error"] == "Unhandled"
    assert (reply.json()["errorType"], reply.json()["errorMessage"]) == (
        "TypeError", "'dict' object is not callable")


# Tracebacks under load (item 8).

FAILING = """\
def handler(event, context):
    print("handler saw", event["n"])
    raise KeyError("missing " + str(event["n"]))
"""


def test_repeated_tracebacks_are_counted_not_printed(tmp_path: Path) -> None:
    write(tmp_path / "task" / "failing.py", FAILING)
    calls = 300
    with local("failing.handler", tmp_path / "task", workers=2,
               log_path=tmp_path / "log") as service:
        tails: list[str] = []

        def call(start: int) -> None:
            for n in range(start, calls, 4):
                reply = service.invoke({"n": n}, headers={"X-Amz-Log-Type": "Tail"})
                assert reply.json()["errorType"] == "KeyError"
                tails.append(base64.b64decode(reply.headers["x-amz-log-result"]).decode())

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        service.process.send_signal(signal.SIGTERM)  # the last counts are said on the way out
        service.process.wait(30)
        log = service.log()
    assert log.count("[ERROR] KeyError: ") == 1
    assert log.count("Traceback (most recent call last):") == 1
    counted = sum(int(line.split()[2]) for line in log.splitlines()
                  if line.startswith("forkric local: ") and " more KeyError in the last" in line)
    assert counted == calls - 1
    assert log.count("handler saw ") == calls  # the function's own lines are all there
    # Each invocation's own log keeps its error record, traceback included.
    assert len(tails) == calls
    for tail in tails:
        assert "[ERROR] KeyError: 'missing " in tail
        assert "Traceback (most recent call last):" in tail


# Reload (item 7).

def version(number: int) -> str:
    return f"def handler(event, context):\n    return {number}\n"


def worker_pids(service: Local) -> set[int]:
    slots = service.status()["workers"]["slots"]
    return {slot["pid"] for slot in slots if slot["state"] in ("idle", "busy")}


RELOADED = "forkric local: reloaded: 2 worker(s) on the new code, "


def test_reload_after_a_real_edit(tmp_path: Path) -> None:
    app = write(tmp_path / "task" / "app.py", version(1))
    with local("app.handler", tmp_path / "task", "--reload", workers=2,
               log_path=tmp_path / "log") as service:
        supervisor = service.status()["runtime"]["pid"]
        assert service.invoke({}).json() == 1
        old = worker_pids(service)
        app.write_text(version(2))  # the same size, within the same second: no stale bytecode
        # The workers are replaced one at a time; an idle old one leaves at once. One line says
        # when none is left (found by trying: until then a call may still get the old code, and
        # the user was not told when that was over); from then on, no call runs the old code.
        wait_for(lambda: RELOADED in service.log(), 30, "the reload said it is done")
        assert len(pids := worker_pids(service)) == 2 and not pids & old
        assert [service.invoke({}).json() for _ in range(6)] == [2] * 6
        app.write_text("def handler(event, context):\n    return 3 +\n")
        wait_for(lambda: "the old one serves" in service.log(), 30, "the failed reload")
        assert service.invoke({}).json() == 2
        app.write_text(version(4))
        wait_for(lambda: service.log().count(RELOADED) == 2, 30, "the fix's reload done")
        assert [service.invoke({}).json() for _ in range(4)] == [4] * 4
        assert service.status()["runtime"]["pid"] == supervisor  # no restart: a re-import
        log = service.log()
    assert "--reload: watching the Python files under " in log
    assert log.count("app.py changed: importing the handler again") >= 3
    assert ("SIGHUP: the handler failed to import again, the old one serves: "
            "Runtime.UserCodeSyntaxError: Syntax error in module 'app'") in log


def test_reload_after_an_init_error_starts_the_runtime(tmp_path: Path) -> None:
    app = write(tmp_path / "task" / "app.py", "import no_such_dependency\n")
    with local("app.handler", tmp_path / "task", "--reload", workers=1, wait_ready=False,
               log_path=tmp_path / "log") as service:
        wait_for(lambda: service.status()["runtime"]["init_failed"], 30, "the init error")
        app.write_text(version(5))
        wait_for(lambda: service.status()["ready"], 30, "ready after the fix")
        assert service.invoke({}).json() == 5


def test_reload_ignores_virtual_environments_and_caches(tmp_path: Path) -> None:
    """A `pip install` into the project's venv, or a test run's caches, is no edit of the
    function: only app.py's change reloads it (each of these reloaded it before)."""
    task = tmp_path / "task"
    app = write(task / "app.py", version(1))
    write(task / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")
    with local("app.handler", task, "--reload", workers=2, log_path=tmp_path / "log") as service:
        for junk in ("venv/lib/python3.11/site-packages/six.py", "myenv/lib/site-packages/x.py",
                     ".venv/lib/y.py", "__pycache__/app.py", ".pytest_cache/v/z.py",
                     ".mypy_cache/3.11/app.py", "node_modules/n/build.py", ".git/hook.py"):
            write(task / junk, "x = 1\n")
        app.write_text(version(2))  # after them: its reload comes last, whatever batched
        wait_for(lambda: RELOADED in service.log(), 30, "the reload said it is done")
        assert service.invoke({}).json() == 2
        log = service.log()
    changed = [line for line in log.splitlines() if "changed: importing the handler" in line]
    assert len(changed) == 1 and "app.py changed" in changed[0], changed


def test_sighup_to_forkric_local_reloads(tmp_path: Path) -> None:
    app = write(tmp_path / "task" / "app.py", version(1))
    with local("app.handler", tmp_path / "task", workers=2, log_path=tmp_path / "log") as service:
        supervisor = service.status()["runtime"]["pid"]
        app.write_text(version(7))
        service.process.send_signal(signal.SIGHUP)
        wait_for(lambda: RELOADED in service.log(), 30, "the reload said it is done")
        assert [service.invoke({}).json() for _ in range(4)] == [7] * 4
        assert service.process.poll() is None
        assert service.status()["runtime"]["pid"] == supervisor
        assert "forkric local: SIGHUP: importing the handler again" in service.log()


# The command line (items 4 and 9).

def test_invoke_help_gives_defaults_and_environment_variables() -> None:
    done = forkric("invoke", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for piece in ("--payload", "@- for standard input", "default: {}", "env $FORKRIC_PAYLOAD",
                  "--port", "default: 9000", "env $FORKRIC_PORT", "--log-type {None,Tail}",
                  "--wait-ready", "0: do not wait", "--function NAME", "default: function"):
        assert piece in text, piece


@pytest.mark.parametrize(("args", "message"), [
    (["invoke", "--function", "bad name!"], "forkric invoke: bad value for --function: "
                                            "'bad name!' is not a Lambda function name"),
    (["invoke", "--port", "abc"], "forkric invoke: bad value for --port: 'abc' is not a whole "
                                  "number"),
    (["local", "app.handler", "--workers", "two"], "forkric local: bad value for --workers: "
                                                   "'two' is not a whole number"),
    (["local", "app.handler", "--timeout", "0"], "forkric local: bad value for --timeout: '0' "
                                                 "is not more than 0"),
    (["soak", "app.handler", "--max-worker-memory", "lots"],
     "forkric soak: bad value for --max-worker-memory: 'lots' is not a number"),
    (["local"], "forkric local: name a handler (module.function) or set _HANDLER"),
    (["invoke", "--log-type", "tail"], "forkric invoke: bad value for --log-type: 'tail' is not "
                                       "one of None, Tail"),
    (["load", "--event", "{oops"], "forkric load: bad --event: not JSON"),
    (["load", "--event", "@no-such-file.json:3"], "forkric load: bad --event: "
                                                  "@no-such-file.json: No such file"),
    # Found by trying (review of issue 13): each was argparse's usage block over several lines,
    # an unknown flag blamed on `forkric` rather than the command, or a traceback.
    (["local", "app.handler", "--timeout", "inf"], "forkric local: bad value for --timeout: "
                                                   "'inf' is not a finite number"),
    (["local", "app.handler", "--workers"], "forkric local: argument --workers: expected one "
                                            "argument (see forkric local --help)"),
    (["invoke", "--timeout", "3"], "forkric invoke: unrecognized arguments: --timeout 3 (see "
                                   "forkric invoke --help)"),
    (["local", "app.handler", "extra"], "forkric local: unrecognized arguments: extra"),
    # Accepted and ignored (the service keeps its own scoreboard file, behind GET /status).
    (["local", "app.handler", "--status-file", "/tmp/x"], "forkric local: unrecognized "
                                                          "arguments: --status-file /tmp/x"),
    (["lcal"], "forkric: argument command: invalid choice: 'lcal'"),
    ([], "forkric: the following arguments are required: command (see forkric --help)"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                              message: str) -> None:
    env_free = {k: v for k, v in os.environ.items() if k != "_HANDLER"}
    # The console script, as a user types it (`python -m forkric` makes any first word `run`'s).
    done = subprocess.run([str(Path(sys.executable).with_name("forkric")), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env_free)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    # Set through the environment, a bad value is named by its variable (the flag was named,
    # which a user who never typed it could not match to anything they did).
    (["invoke"], {"FORKRIC_PAYLOAD": "@no-such.json"},
     "forkric invoke: cannot read FORKRIC_PAYLOAD @no-such.json: No such file"),
    (["invoke", "--payload", "@no-such.json"], {},
     "forkric invoke: cannot read --payload @no-such.json: No such file"),
    (["load"], {"FORKRIC_SOAK_EVENT": "{oops"}, "forkric load: bad FORKRIC_SOAK_EVENT: not JSON"),
    (["invoke"], {"FORKRIC_PORT": "0"}, "forkric invoke: bad value for FORKRIC_PORT: a client "
                                        "calls a port of 1 to 65535"),
    (["invoke", "--port", "0"], {}, "forkric invoke: bad value for --port: a client calls"),
    (["load", "--port", "0"], {}, "forkric load: bad value for --port: a client calls"),
    (["invoke"], {"FORKRIC_PORT": "70000"}, "forkric invoke: bad value for FORKRIC_PORT: "
                                            "'70000' is not a port number"),
    (["local", "app.handler"], {"FORKRIC_WORKERS": "two"},
     "forkric local: bad value for FORKRIC_WORKERS: 'two' is not a whole number"),
])
def test_usage_errors_name_what_the_user_set(tmp_path: Path, args: list[str],
                                             env: dict[str, str], message: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FORKRIC_")} | env
    done = subprocess.run([str(Path(sys.executable).with_name("forkric")), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=environ)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_soak_names_a_bad_event_variable(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FORKRIC_")}
    done = subprocess.run([str(Path(sys.executable).with_name("forkric")), "soak", "app.handler"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=environ | {"FORKRIC_SOAK_EVENT": "{oops"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("forkric soak: FORKRIC_SOAK_EVENT is not JSON"), done.stderr


def not_http(connection: socket.socket) -> None:
    with connection:
        connection.recv(65536)
        connection.sendall(b"hello, I am not HTTP\r\n\r\n")


def test_invoke_without_a_service_is_one_line(tmp_path: Path) -> None:
    """Nothing listening, or something that is not HTTP: one line and exit 1, no traceback
    (the second was http.client's BadStatusLine traceback)."""
    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    done = forkric("invoke", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"forkric invoke: cannot connect to http://127.0.0.1:{port}: nothing "
                           f"listens there (start `forkric local HANDLER`, or name its address "
                           f"with --port / --host)\n")
    with socket.create_server(("127.0.0.1", 0)) as server:
        answering = threading.Thread(target=lambda: not_http(server.accept()[0]))
        answering.start()
        done = forkric("invoke", "--port", str(server.getsockname()[1]), cwd=tmp_path)
        answering.join(30)
    assert done.returncode == 1, done.stderr
    assert "did not answer as an HTTP server (BadStatusLine" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_invoke_reads_the_payload_from_stdin(tmp_path: Path) -> None:
    write(tmp_path / "task" / "echo.py", "def handler(event, context):\n    return event\n")
    with local("echo.handler", tmp_path / "task", workers=1, log_path=tmp_path / "log") as service:
        done = forkric("invoke", "--port", str(service.port), "--payload", "@-",
                       stdin='{"from": "stdin"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.split("--- body ---\n", 1)[1]) == {"from": "stdin"}
