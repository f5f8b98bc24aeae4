"""Logging as Lambda's Python runtime does it: text or JSON records tagged with the request id,
written to stdout or, under Lambda, as frames on the telemetry fd."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

from forkric.marshal import to_json

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
# The error log line's parts are joined by CR on stdout so that CloudWatch keeps them one event,
# and its indentation uses no-break spaces, which CloudWatch does not strip.
ERROR_LINE_JOIN = "\r"
ERROR_INDENT = "\u00a0"

# Frame types: 0xA55A0002 | level bits | text bit.
_LEVEL_BITS = {logging.NOTSET: 0x0, logging.DEBUG: 0x8, logging.INFO: 0xC, logging.WARNING: 0x10,
               logging.ERROR: 0x14, logging.CRITICAL: 0x18}
JSON_FRAME = {level: (0xA55A0002 | bits).to_bytes(4, "big") for level, bits in _LEVEL_BITS.items()}
TEXT_FRAME = {level: (0xA55A0003 | bits).to_bytes(4, "big") for level, bits in _LEVEL_BITS.items()}

UNHANDLED_INIT_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. "
    "For functions using managed runtimes, runtime updates can be triggered by a function change, "
    "or can be applied automatically. To determine if the runtime has been updated, check the "
    "runtime version in the INIT_START log entry. If this error correlates with a change in the "
    "runtime version, you may be able to mitigate this error by temporarily rolling back to the "
    "previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)

# awslambdaric 4.2.2 (bootstrap.PREVIEW_RUNTIME_ENVS, lambda_literals): the runtimes it warns of.
PREVIEW_RUNTIMES = frozenset({"AWS_Lambda_python3.15"})
PREVIEW_DOCS = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html"
PREVIEW_DOCS_CN = "https://docs.amazonaws.cn/lambda/latest/dg/lambda-runtimes.html"
WORKER_POOL_EVENT = "runtime_worker_pool_initializing"

# The record attributes a JSON log line leaves out; any other one (`extra`, but also `taskName` on
# Python 3.12+, or `asctime` set by another formatter) is written, as awslambdaric does.
_RECORD_FIELDS = frozenset({
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
    "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread",
    "threadName", "processName", "process", "aws_request_id", "tenant_id", "_frame_type"})

# One invocation at a time per process: the request id is process state.
request_id = ""
tenant_id: str | None = None


def set_request(new_request_id: str, new_tenant_id: str | None) -> None:
    global request_id, tenant_id
    request_id, tenant_id = new_request_id, new_tenant_id


class Unbuffered:
    """A stream that flushes on every write, so logs leave the process when they are written.

    As awslambdaric 4.2.2's (bootstrap.Unbuffered): `write` returns None, and `with sys.stdout`
    works and closes nothing.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __enter__(self) -> Unbuffered:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def writelines(self, lines: Any) -> None:
        self.stream.writelines(lines)
        self.stream.flush()


class StdoutSink:
    def log(self, message: str, frame_type: bytes | None = None) -> None:
        sys.stdout.write(message)

    def log_error(self, lines: list[str]) -> None:
        sys.stdout.write(ERROR_LINE_JOIN.join(lines) + "\n")

    def close(self) -> None:
        pass


class FrameSink:
    """Length-prefixed frames on Lambda's telemetry fd: type, length, timestamp (us), text."""

    def __init__(self, fd: int, error_frame: bytes) -> None:
        self.file = os.fdopen(fd, "wb", 0)
        self.error_frame = error_frame

    def log(self, message: str, frame_type: bytes | None = None) -> None:
        data = message.encode("utf-8")
        header = (frame_type or TEXT_FRAME[logging.NOTSET]) + len(data).to_bytes(4, "big")
        self.file.write(header + (time.time_ns() // 1000).to_bytes(8, "big") + data)

    def log_error(self, lines: list[str]) -> None:
        self.log("\n".join(lines), self.error_frame)

    def close(self) -> None:
        self.file.close()


def _level(record: logging.LogRecord) -> int:
    return min(50, max(0, record.levelno)) // 10 * 10


class JsonFormatter(logging.Formatter):
    _encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    def __init__(self) -> None:
        super().__init__(datefmt=TIMESTAMP_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = _level(record)
        record.levelname = logging.getLevelName(record.levelno)
        record._frame_type = JSON_FRAME.get(record.levelno, JSON_FRAME[logging.NOTSET])
        exc = record.exc_info
        message = record.msg if isinstance(record.msg, dict) and not record.args \
            else record.getMessage()
        result: dict[str, Any] = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "message": message,
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            # exc_info (None, None, None) (logger.exception outside an except block) raises
            # AttributeError here, out of the handler into the caller, as in awslambdaric.
            "errorType": exc[0].__name__ if exc else None,  # type: ignore[union-attr]
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
        }
        tenant = getattr(record, "tenant_id", None)
        if tenant is not None:
            result["tenantId"] = tenant
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in result:
                result[key] = value
        return self._encode({k: v for k, v in result.items() if v is not None}) + "\n"


class SinkHandler(logging.Handler):
    def __init__(self, sink: StdoutSink | FrameSink, framed: bool) -> None:
        super().__init__()
        self.log_sink = sink
        self.framed = framed

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        frame = None
        if self.framed:
            frame = getattr(record, "_frame_type", None) or TEXT_FRAME.get(_level(record))
        self.log_sink.log(message, frame)


class RequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = request_id
        record.tenant_id = tenant_id
        return True


class Logs:
    """The process's log set-up: where records go, in which format, and the error log line."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.json = (environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
        level = environ.get("AWS_LAMBDA_LOG_LEVEL")
        # Only an upper-case TRACE means DEBUG; "trace" stays TRACE, an unknown level, as in
        # awslambdaric.
        self.level = {"TRACE": "DEBUG"}.get(level, level).upper() if level else ""
        error_frame = (JSON_FRAME if self.json else TEXT_FRAME)[logging.ERROR]
        fd = environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
        self.sink: StdoutSink | FrameSink = FrameSink(int(fd), error_frame) if fd else StdoutSink()
        self.handler = SinkHandler(self.sink, self.json or bool(self.level))

    def install(self) -> None:
        """Route the root logger and stdout/stderr as awslambdaric does."""
        if not isinstance(sys.stdout, Unbuffered):
            sys.stdout = Unbuffered(sys.stdout)
            sys.stderr = Unbuffered(sys.stderr)
        logging.Formatter.converter = time.gmtime
        if self.json:
            self.handler.setFormatter(JsonFormatter())
        else:
            self.handler.setFormatter(logging.Formatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S"))
        root = logging.getLogger()
        if isinstance(logging.getLevelName(self.level), int):
            root.setLevel(self.level)
        self.handler.addFilter(RequestFilter())
        root.addHandler(self.handler)

    def error(self, error: Mapping[str, Any]) -> None:
        """The log line of an unhandled error: `[ERROR] Type: message` and the traceback."""
        if self.json:
            stamp = time.strftime(TIMESTAMP_FORMAT, time.gmtime())
            self.sink.log_error([to_json({"timestamp": stamp, "level": "ERROR", **error})])
            return
        head = "[ERROR]"
        if error.get("errorType"):
            head += " " + error["errorType"]
        if error.get("errorMessage"):
            head += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
        lines = [head]
        if error.get("stackTrace") is not None:
            lines.append("Traceback (most recent call last):")
            for entry in error["stackTrace"]:
                if entry:
                    lines.extend(_indent(line) for line in entry.splitlines())
                else:
                    lines.append("")
        self.sink.log_error(lines)


def _indent(line: str) -> str:
    stripped = line.lstrip(" ")
    return ERROR_INDENT * (len(line) - len(stripped)) + stripped


def preview_warning(environ: Mapping[str, str]) -> str | None:
    """The LAMBDA_WARNING awslambdaric 4.2.2 logs before importing the handler on a preview
    runtime (AWS_EXECUTION_ENV in PREVIEW_RUNTIMES), unless LAMBDA_DISABLE_PREVIEW_WARN is set
    to anything non-empty; None when there is nothing to say."""
    if environ.get("LAMBDA_DISABLE_PREVIEW_WARN") or \
            environ.get("AWS_EXECUTION_ENV", "") not in PREVIEW_RUNTIMES:
        return None
    docs = PREVIEW_DOCS_CN if environ.get("AWS_REGION", "").startswith("cn-") else PREVIEW_DOCS
    return ("LAMBDA_WARNING: This is a preview runtime version and should not be used for "
            f"production workloads. For further information and to provide feedback, see {docs}\r")


def worker_pool_event(environ: Mapping[str, str], workers: int) -> dict[str, Any] | None:
    """The DEBUG record awslambdaric 4.0.3+ logs once, before starting its processes, when
    AWS_LAMBDA_MAX_CONCURRENCY is set (Lambda Managed Instances); None otherwise. `workerCount`
    is the number of workers forkric starts (awslambdaric always starts the concurrency)."""
    concurrency = environ.get("AWS_LAMBDA_MAX_CONCURRENCY")
    if concurrency is None:
        return None
    return {"event": WORKER_POOL_EVENT, "workerCount": workers,
            "executionEnvironmentMaxConcurrency": int(concurrency)}


def log_init_records(environ: Mapping[str, str], workers: int) -> None:
    """What awslambdaric logs at start, before the handler's import, through the root logger
    (so the log format and level apply): the worker pool event, then the preview warning."""
    event = worker_pool_event(environ, workers)
    if event is not None:
        logging.getLogger().debug(event)
    warning = preview_warning(environ)
    if warning is not None:
        logging.warning(warning)
