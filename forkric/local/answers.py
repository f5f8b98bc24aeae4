"""What the Invoke API answers: Lambda's statuses, headers and bodies, in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forkric.local.streams import Stream

from forkric import protocol
from forkric.protocol import REQUEST_LIMIT as REQUEST_LIMIT  # the service's limits, from here
from forkric.protocol import RESPONSE_LIMIT as RESPONSE_LIMIT
from forkric.protocol import returncode_end, runtime_exited

FUNCTION_ERROR = "X-Amz-Function-Error"
ERROR_TYPE = "x-amzn-ErrorType"


@dataclass
class Result:
    """The invoker's answer to one invocation."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None  # a streamed response: its body comes from here

    @property
    def function_error(self) -> bool:
        return FUNCTION_ERROR in self.headers


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def service_error(status: int, error_type: str, message: str, **extra: str) -> Result:
    """An error of the Lambda service itself (throttling, limits, bad requests)."""
    body = {"Type": "User", "message": message, **extra}
    return Result(status, _json(body), headers={ERROR_TYPE: error_type})


def invalid_value(member: str, given: str, pattern: str) -> Result:
    # As Lambda words a parameter that fails its pattern.
    return service_error(400, "ValidationException",
                         f"1 validation error detected: Value '{given}' at '{member}' failed "
                         f"to satisfy constraint: Member must satisfy regular expression "
                         f"pattern: {pattern}")


def too_many_requests(max_queue: int) -> Result:
    return service_error(429, "TooManyRequestsException", "Rate Exceeded.",
                         Reason=f"forkric local: {max_queue} invocation(s) already queued")


def request_too_large(size: int) -> Result:
    return service_error(413, "RequestEntityTooLargeException",
                         f"Request must be smaller than {REQUEST_LIMIT} bytes for the "
                         f"InvokeFunction operation (it was {size} bytes)")


def stopping() -> Result:
    return service_error(503, "ServiceException", "forkric local is stopping")


def success(body: bytes, content_type: str) -> Result:
    return Result(200, body, content_type or "application/json")


def function_error(body: bytes) -> Result:
    """An error the runtime reported (handler exception, crash of a worker): 200, Unhandled."""
    return Result(200, body, "application/json", {FUNCTION_ERROR: "Unhandled"})


def error_body(error_type: str, message: str) -> bytes:
    return _json({"errorMessage": message, "errorType": error_type})


def timed_out(timeout_s: float) -> Result:
    # The classic RIE's exact answer: plain text, the timeout with two decimals.
    return Result(200, f"Task timed out after {timeout_s:.2f} seconds".encode(), "text/plain",
                  {FUNCTION_ERROR: "Unhandled"})


def response_too_large(size: int) -> Result:
    error = protocol.response_too_large(size)
    return function_error(error_body(error["errorType"], error["errorMessage"]))


def init_error(body: bytes) -> Result:
    # As the classic RIE answers an invocation whose runtime failed to initialise.
    return Result(502, body, "application/json")


def runtime_exit(request_id: str, returncode: int) -> Result:
    """The runtime process ended as a whole (a `subprocess` return code): worded as the
    supervisor words a worker's end, 'without providing a reason' for a clean exit 0."""
    end = None if returncode == 0 else returncode_end(returncode)
    return function_error(error_body("Runtime.ExitError", runtime_exited(request_id, end)))


def _non_standard(token: str) -> Any:
    raise ValueError(f"Non-standard token '{token}': not valid JSON")


def json_problem(payload: bytes) -> str | None:
    """Why Lambda would refuse this Invoke API payload as JSON, or None when it is valid (or
    empty, which Lambda accepts and invokes with {}). NaN and Infinity are refused, as Lambda's
    parser refuses them."""
    if not payload:
        return None
    try:
        json.loads(payload, parse_constant=_non_standard)
    except json.JSONDecodeError as exc:
        excerpt = exc.doc[:256] if isinstance(exc.doc, str) else ""
        return (f'{exc.msg}\n at [Source: (byte[])"{excerpt}"; line: {exc.lineno}, '
                f'column: {exc.colno}]')
    except ValueError as exc:  # not UTF-8/16/32, or a non-standard token
        return str(exc)
    return None


def invalid_json(detail: str) -> Result:
    # Lambda parses the payload before invoking; the second prefix is also Lambda's own.
    return service_error(400, "InvalidRequestContentException",
                         f"Could not parse request body into json: Could not parse payload into "
                         f"json: {detail}")


# SnapStart, as the Invoke API answers (Lambda API reference, Invoke: Errors).
def snap_start_error() -> Result:
    return service_error(400, "SnapStartException",
                         "The afterRestore() runtime hook encountered an error. For more "
                         "information, check the Amazon CloudWatch logs.")


def snap_start_timeout() -> Result:
    return service_error(408, "SnapStartTimeoutException",
                         "Lambda couldn't restore the snapshot within the timeout limit.")
