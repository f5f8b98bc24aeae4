"""Lambda's error shapes: the JSON body every error carries, and the user's stack trace."""

from __future__ import annotations

import os
import traceback
from types import TracebackType
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
EXIT_ERROR = "Runtime.ExitError"
OUT_OF_MEMORY = "Runtime.OutOfMemory"


class LambdaError(Exception):
    """An error the runtime itself raises, with Lambda's type and wording."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def body(message: str, error_type: str, trace: list[str], request_id: str = "") -> dict[str, Any]:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id,
        "stackTrace": trace,
    }


def user_frames(tb: TracebackType | None) -> traceback.StackSummary:
    """The traceback without forkric's own leading frames: the user sees only their code."""
    frames = traceback.extract_tb(tb)
    for index, frame in enumerate(frames):
        if not frame.filename.startswith(_PACKAGE_DIR):
            return traceback.StackSummary.from_list(frames[index:])
    return frames


def from_exception(exc: BaseException,
                   request_id: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The error body and the X-Ray cause of an exception the user's code raised."""
    if isinstance(exc, LambdaError):
        return body(exc.message, exc.error_type, exc.trace, request_id), xray_cause(
            "LambdaValidationError", exc.message, traceback.StackSummary())
    frames = user_frames(exc.__traceback__)
    name = type(exc).__name__
    return body(str(exc), name, format_frames(frames), request_id), xray_cause(
        name, str(exc), frames)


def format_frames(frames: traceback.StackSummary) -> list[str]:
    """The stack trace entries as awslambdaric writes them: from plain (file, line, name, source)
    tuples, so Python 3.11+ adds no `^^^^` position markers under the source lines."""
    plain: list[tuple[str, int, str, str | None]] = [
        (f.filename, f.lineno or 0, f.name, f.line) for f in frames]
    return traceback.format_list(plain)


def xray_cause(error_type: str, message: str, frames: traceback.StackSummary) -> dict[str, Any]:
    return {
        "working_directory": os.getcwd(),
        "exceptions": [{
            "message": message,
            "type": error_type,
            "stack": [{"label": f.name, "path": f.filename, "line": f.lineno} for f in frames],
        }],
        "paths": list({f.filename for f in frames}),
    }
