"""Event and result marshalling, byte for byte as Lambda's Python runtime does it."""

from __future__ import annotations

import decimal
import math
import os
from typing import Any

import simplejson

from forkric import errors

# From Python 3.12 on, Lambda writes non-ASCII text as is; before, as \u escapes.
_RAW_UNICODE_RUNTIMES = frozenset(
    f"AWS_Lambda_python3.{minor}" for minor in range(12, 16))


class _Encoder(simplejson.JSONEncoder):
    def __init__(self) -> None:
        raw = os.environ.get("AWS_EXECUTION_ENV") in _RAW_UNICODE_RUNTIMES
        super().__init__(use_decimal=False, ensure_ascii=not raw, allow_nan=True)

    def default(self, o: Any) -> Any:
        # Decimals keep their digits (1.50 stays 1.50); a NaN decimal is written as NaN.
        if isinstance(o, decimal.Decimal):
            return math.nan if o.is_nan() else simplejson.RawJSON(str(o))
        return super().default(o)


_encoder: _Encoder | None = None


def _get_encoder() -> _Encoder:
    # Built on first use, not at import: AWS_EXECUTION_ENV is read when the runtime starts.
    global _encoder
    if _encoder is None:
        _encoder = _Encoder()
    return _encoder


def to_json(value: Any) -> str:
    return _get_encoder().encode(value)


def event(body: bytes, content_type: str | None) -> Any:
    """The handler's event: parsed JSON, or the raw bytes for any other content type."""
    if content_type != "application/json":
        return body
    try:
        return simplejson.loads(body)
    except Exception as exc:
        raise errors.LambdaError(
            errors.UNMARSHAL_ERROR, f"Unable to unmarshal input: {exc}") from None


def result(value: Any) -> tuple[bytes, str]:
    """The response body and its content type: bytes as they are, anything else as JSON."""
    if isinstance(value, bytes):
        return value, "application/unknown"
    try:
        return _get_encoder().encode(value).encode("utf-8"), "application/json"
    except Exception as exc:
        raise errors.LambdaError(
            errors.MARSHAL_ERROR, f"Unable to marshal response: {exc}") from None
