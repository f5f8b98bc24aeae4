"""forkric.logs against awslambdaric's logging: text and JSON records, levels, telemetry frames
on a real fd, and the error log line."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from awslambdaric import bootstrap
from awslambdaric import lambda_runtime_log_utils as aws_log_utils

from forkric import logs

from .conftest import run_python

FIXED_NS = 1_700_000_000_123_456_789


@pytest.fixture
def clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """A root logger without handlers, stdout/stderr and the converter restored after, and a
    frozen clock so that both runtimes stamp records alike."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    reset(root)
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(logging.Formatter, "converter", logging.Formatter.converter)
    monkeypatch.setattr(time, "time_ns", lambda: FIXED_NS)
    monkeypatch.setattr(time, "time", lambda: FIXED_NS / 1e9)
    monkeypatch.setattr(bootstrap, "_GLOBAL_AWS_REQUEST_ID", "req-42")
    monkeypatch.setattr(bootstrap, "_GLOBAL_TENANT_ID", None)
    monkeypatch.setattr(logs, "request_id", "req-42")
    monkeypatch.setattr(logs, "tenant_id", None)
    yield root
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def reset(root: logging.Logger) -> None:
    """Take out the runtime's handler installed by the previous run, restore the level."""
    for handler in root.handlers[:]:
        if hasattr(handler, "log_sink"):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


class Boom(Exception):
    pass


def emit_corpus() -> None:
    """The same records for both runtimes."""
    log = logging.getLogger("corpus.child")
    log.debug("debug %s", "args")
    log.info("info é😀")
    log.warning("warn\nmulti-line")
    log.error("error %d%%", 5)
    log.critical("critical")
    log.log(5, "level five")
    log.log(25, "level 25")
    log.log(60, "level 60")
    log.info({"dict": "message", "n": 1})
    log.info({"dict": "with args %s"}, "x")
    log.info("extra fields", extra={"custom": {"k": [1, 2]}, "obj": Boom("as str"),
                                    "none": None})
    try:
        raise Boom("boom é")
    except Boom:
        log.exception("caught")
    logging.getLogger().warning("root logger")
    record = log.makeRecord("corpus.child", logging.INFO, "f.py", 3, "with taskName", (), None)
    record.taskName = "Task-1"
    log.handle(record)
    record = log.makeRecord("corpus.child", logging.INFO, "f.py", 3, "with asctime", (), None)
    record.asctime = "set by another formatter"
    log.handle(record)


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def split_frames(data: bytes) -> list[tuple[bytes, int, bytes]]:
    frames = []
    while data:
        length = int.from_bytes(data[4:8], "big")
        frames.append((data[:4], int.from_bytes(data[8:16], "big"), data[16:16 + length]))
        data = data[16 + length:]
    return frames


def run_aws_framed(log_format: str | None, log_level: str | None,
                   action: Callable[[], None]) -> bytes:
    read_fd, write_fd = os.pipe()
    sink = bootstrap.FramedTelemetryLogSink(write_fd)
    sink.__enter__()
    bootstrap._setup_logging(aws_log_utils.LogFormat.from_str(log_format),
                             aws_log_utils._get_log_level_from_env_var(log_level), sink)
    try:
        action()
    finally:
        sink.__exit__(None, None, None)
    return read_all(read_fd)


def run_ours_framed(log_format: str | None, log_level: str | None,
                    action: Callable[[], None]) -> tuple[bytes, logs.Logs]:
    read_fd, write_fd = os.pipe()
    environ = {"_LAMBDA_TELEMETRY_LOG_FD": str(write_fd)}
    if log_format is not None:
        environ["AWS_LAMBDA_LOG_FORMAT"] = log_format
    if log_level is not None:
        environ["AWS_LAMBDA_LOG_LEVEL"] = log_level
    our_logs = logs.Logs(environ)
    assert "_LAMBDA_TELEMETRY_LOG_FD" not in environ
    assert isinstance(our_logs.sink, logs.FrameSink)
    our_logs.install()
    try:
        action()
    finally:
        our_logs.sink.close()
    return read_all(read_fd), our_logs


FORMATS = [None, "text", "JSON", "json"]
LEVELS = [None, "", "INFO", "debug", "TRACE", "trace", "WARN", "error", "CRITICAL", "bogus"]


@pytest.mark.parametrize("log_format", FORMATS)
@pytest.mark.parametrize("log_level", LEVELS)
def test_framed_records_match_awslambdaric(clean_logging: logging.Logger, log_format: str | None,
                                           log_level: str | None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    theirs = run_aws_framed(log_format, log_level, emit_corpus)
    their_level = clean_logging.level
    reset(clean_logging)
    mine, _ = run_ours_framed(log_format, log_level, emit_corpus)
    assert clean_logging.level == their_level
    assert split_frames(mine) == split_frames(theirs)
    assert mine == theirs
    assert len(split_frames(mine)) >= 3


def test_frame_layout(clean_logging: logging.Logger) -> None:
    mine, _ = run_ours_framed("JSON", "INFO",
                              lambda: logging.getLogger("x").critical("über"))
    ((frame_type, stamp, text),) = split_frames(mine)
    assert frame_type == bytes.fromhex("A55A001A")
    assert stamp == FIXED_NS // 1000
    record = json.loads(text)
    assert record["message"] == "über" and record["level"] == "CRITICAL"
    assert record["requestId"] == "req-42"
    assert text.endswith(b"\n")


def test_text_frame_types(clean_logging: logging.Logger) -> None:
    mine, _ = run_ours_framed(None, "INFO", lambda: logging.getLogger("x").info("hi"))
    ((frame_type, _, text),) = split_frames(mine)
    assert frame_type == bytes.fromhex("A55A000F")
    assert text == b"[INFO]\t2023-11-14T22:13:20.123Z\treq-42\thi\n"
    reset(clean_logging)
    mine, _ = run_ours_framed(None, None, lambda: logging.getLogger("x").warning("hi"))
    assert split_frames(mine)[0][0] == bytes.fromhex("A55A0003")


@pytest.mark.parametrize("tenant", [None, "tenant-é"])
def test_tenant_id_in_json_records(clean_logging: logging.Logger,
                                   monkeypatch: pytest.MonkeyPatch, tenant: str | None) -> None:
    monkeypatch.setattr(bootstrap, "_GLOBAL_TENANT_ID", tenant)
    logs.set_request("req-42", tenant)
    theirs = run_aws_framed("JSON", None, lambda: logging.getLogger("t").warning("w"))
    reset(clean_logging)
    mine, _ = run_ours_framed("JSON", None, lambda: logging.getLogger("t").warning("w"))
    assert mine == theirs
    assert ("tenantId" in json.loads(split_frames(mine)[0][2])) == (tenant is not None)


def test_exception_outside_except_fails_as_in_awslambdaric(clean_logging: logging.Logger) -> None:
    # logger.exception with no exception being handled: exc_info is (None, None, None), and
    # awslambdaric's JSON formatter raises AttributeError out of its handler into the caller.
    def action() -> None:
        logging.getLogger("x").error("before")
        with pytest.raises(AttributeError) as info:
            logging.getLogger("x").exception("no exception here")
        raised.append(str(info.value))

    raised: list[str] = []
    theirs = run_aws_framed("JSON", None, action)
    reset(clean_logging)
    mine, _ = run_ours_framed("JSON", None, action)
    assert mine == theirs
    assert len(split_frames(mine)) == 1
    assert raised[0] == raised[1] == "'NoneType' object has no attribute '__name__'"


def test_exception_outside_except_in_text_mode(clean_logging: logging.Logger) -> None:
    def action() -> None:
        logging.getLogger("x").exception("no exception here")

    theirs = run_aws_framed(None, "INFO", action)
    reset(clean_logging)
    mine, _ = run_ours_framed(None, "INFO", action)
    assert mine == theirs
    assert split_frames(mine)[0][2].endswith(b"no exception here\nNoneType: None")


def stdout_run(setup: Callable[[], None], capsys: pytest.CaptureFixture[str]) -> str:
    setup()
    emit_corpus()
    return capsys.readouterr().out


@pytest.mark.parametrize("log_format", [None, "JSON"])
@pytest.mark.parametrize("log_level", [None, "DEBUG"])
def test_stdout_records_match_awslambdaric(clean_logging: logging.Logger,
                                           capsys: pytest.CaptureFixture[str],
                                           log_format: str | None,
                                           log_level: str | None) -> None:
    def aws_setup() -> None:
        bootstrap._setup_logging(aws_log_utils.LogFormat.from_str(log_format),
                                 aws_log_utils._get_log_level_from_env_var(log_level),
                                 bootstrap.StandardLogSink())

    def our_setup() -> None:
        environ = {k: v for k, v in (("AWS_LAMBDA_LOG_FORMAT", log_format),
                                     ("AWS_LAMBDA_LOG_LEVEL", log_level)) if v is not None}
        our_logs = logs.Logs(environ)
        assert isinstance(our_logs.sink, logs.StdoutSink)
        our_logs.install()

    theirs = stdout_run(aws_setup, capsys)
    reset(clean_logging)
    mine = stdout_run(our_setup, capsys)
    assert mine == theirs
    assert "req-42" in mine


def test_install_makes_stdout_unbuffered(clean_logging: logging.Logger) -> None:
    logs.Logs({}).install()
    assert isinstance(sys.stdout, logs.Unbuffered)
    assert isinstance(sys.stderr, logs.Unbuffered)
    logs.Logs({}).install()  # a second install does not wrap twice
    assert not isinstance(sys.stdout.stream, logs.Unbuffered)  # type: ignore[attr-defined]
    assert logging.Formatter.converter is time.gmtime


ERRORS: list[dict[str, Any]] = [
    {"errorMessage": "bad value: é", "errorType": "ValueError", "requestId": "r",
     "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n    raise ValueError(x)\n',
                    '  File "/var/task/lib.py", line 10, in f\n    \tweird indent\n']},
    {"errorMessage": "", "errorType": "NoMessage", "requestId": "", "stackTrace": []},
    {"errorMessage": "only message", "errorType": "", "requestId": "", "stackTrace": []},
    {"errorMessage": "", "errorType": "", "requestId": "", "stackTrace": ["", "x\n"]},
    {"errorMessage": "multi\nline", "errorType": "T", "requestId": "r",
     "stackTrace": ['  File "<frozen importlib._bootstrap>", line 1, in _gcd_import\n']},
    {"errorMessage": "m", "errorType": "T"},
    {"errorMessage": "m", "errorType": "Runtime.MarshalError", "stackTrace": None},
]


class LinesSink:
    def __init__(self) -> None:
        self.errors: list[list[str]] = []

    def log_error(self, lines: list[str]) -> None:
        self.errors.append(list(lines))


@pytest.mark.parametrize("error", ERRORS, ids=range(len(ERRORS)))
def test_text_error_line_matches_log_error(error: dict[str, Any]) -> None:
    assert aws_log_utils.LogFormat.from_str(os.environ.get("AWS_LAMBDA_LOG_FORMAT")) == \
        aws_log_utils.LogFormat.TEXT, "this test needs awslambdaric imported in text mode"
    theirs = LinesSink()
    bootstrap.log_error(error, theirs)
    our_logs = logs.Logs({})
    mine = LinesSink()
    our_logs.sink = mine  # type: ignore[assignment]
    our_logs.error(error)
    assert mine.errors == theirs.errors


@pytest.mark.parametrize("error", ERRORS[:2], ids=range(2))
def test_text_error_line_on_stdout_and_frames(error: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap.StandardLogSink().log_error(["a", "b\u00a0c"])
    logs.StdoutSink().log_error(["a", "b\u00a0c"])
    out = capsys.readouterr().out
    assert out == "a\rb\u00a0c\n" * 2

    read_a, write_a = os.pipe()
    read_b, write_b = os.pipe()
    with bootstrap.FramedTelemetryLogSink(write_a) as theirs:
        bootstrap.log_error(error, theirs)
    mine = logs.FrameSink(write_b, logs.TEXT_FRAME[logging.ERROR])
    our_logs = logs.Logs({})
    our_logs.sink = mine
    our_logs.error(error)
    mine.close()
    their_frames, my_frames = split_frames(read_all(read_a)), split_frames(read_all(read_b))
    assert [(t, x) for t, _, x in my_frames] == [(t, x) for t, _, x in their_frames]
    assert my_frames[0][0] == bytes.fromhex("A55A0017")
    assert abs(my_frames[0][1] - time.time_ns() // 1000) < 60_000_000


JSON_ERROR_SCRIPT = """
    import json, sys
    from awslambdaric import bootstrap
    from forkric import logs

    class Sink:
        def __init__(self):
            self.lines = []
        def log_error(self, lines):
            self.lines.append(lines)

    errors = json.loads(sys.argv[1])
    out = []
    for error in errors:
        theirs, mine = Sink(), Sink()
        bootstrap._setup_logging(0, "", theirs)  # sets the gmtime converter, as run() does
        bootstrap.log_error(error, theirs)
        our_logs = logs.Logs({"AWS_LAMBDA_LOG_FORMAT": "JSON"})
        our_logs.sink = mine
        our_logs.error(error)
        out.append({"theirs": theirs.lines, "mine": mine.lines,
                    "frame": [bootstrap._ERROR_FRAME_TYPE.hex(),
                              logs.JSON_FRAME[40].hex()]})
    print(json.dumps(out))
"""


@pytest.mark.parametrize("execution_env", [None, "AWS_Lambda_python3.12"])
def test_json_error_line_matches_log_error(execution_env: str | None) -> None:
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON"}
    if execution_env:
        env["AWS_EXECUTION_ENV"] = execution_env
    out = json.loads(run_python(JSON_ERROR_SCRIPT, env, args=(json.dumps(ERRORS),)))
    stamp = re.compile(r'^\{"timestamp": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ')
    for case in out:
        ((theirs,),), ((mine,),) = case["theirs"], case["mine"]
        assert stamp.match(mine)
        assert stamp.sub("", mine) == stamp.sub("", theirs)
        assert case["frame"][0] == case["frame"][1] == "a55a0016"


def test_set_request() -> None:
    logs.set_request("abc", None)
    record = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)
    assert logs.RequestFilter().filter(record)
    assert (record.aws_request_id, record.tenant_id) == ("abc", None)  # type: ignore[attr-defined]
    logs.set_request("", None)


def test_empty_telemetry_fd_means_stdout() -> None:
    environ = {"_LAMBDA_TELEMETRY_LOG_FD": ""}
    assert isinstance(logs.Logs(environ).sink, logs.StdoutSink)
    assert environ == {}


# The output streams and the start-up records, as awslambdaric 4.2.2 has them.

def test_unbuffered_stream_as_awslambdaric() -> None:
    import io

    for wrapper in (logs.Unbuffered, bootstrap.Unbuffered):
        inner = io.StringIO()
        stream = wrapper(inner)
        with stream as entered:
            assert entered is stream
            assert entered.write("x\n") is None
        assert stream.writelines(["a", "b"]) is None
        assert not inner.closed  # leaving the with block closes nothing
        assert inner.getvalue() == "x\nab"


@pytest.mark.parametrize("env", [
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.15"},
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.15", "AWS_REGION": "cn-northwest-1"},
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.15", "LAMBDA_DISABLE_PREVIEW_WARN": "false"},
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.15", "LAMBDA_DISABLE_PREVIEW_WARN": ""},
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.14"},
    {},
])
def test_preview_warning_as_awslambdaric(monkeypatch: pytest.MonkeyPatch,
                                         env: dict[str, str]) -> None:
    from awslambdaric import lambda_literals

    for name in ("AWS_EXECUTION_ENV", "AWS_REGION", "LAMBDA_DISABLE_PREVIEW_WARN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    warned: list[str] = []
    monkeypatch.setattr(logging, "warning", lambda message: warned.append(message))
    bootstrap._log_preview_runtime_warning()
    assert logs.preview_warning(env) == (warned[0] if warned else None)
    if warned:
        assert warned[0] == lambda_literals.get_lambda_preview_runtime_warning_message()


def test_worker_pool_event() -> None:
    assert logs.worker_pool_event({}, 4) is None
    assert logs.worker_pool_event({"AWS_LAMBDA_MAX_CONCURRENCY": "8"}, 2) == {
        "event": "runtime_worker_pool_initializing", "workerCount": 2,
        "executionEnvironmentMaxConcurrency": 8}
