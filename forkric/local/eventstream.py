"""The AWS event-stream encoding (`application/vnd.amazon.eventstream`) of the
InvokeWithResponseStream answer: `PayloadChunk` events, then one `InvokeComplete`.

Written here because no well-kept Python library encodes it on the Python versions forkric
supports: botocore has only the decoder, awscrt's event-stream is its RPC client, and
smithy-aws-event-stream needs Python 3.12. The tests check every message with botocore's decoder.

A message: total length and headers length (4 bytes each, big-endian), the CRC32 of those eight
bytes, the headers, the payload, then the CRC32 of everything before it. A header: its name's
length (1 byte), the name, the value type (7: string), the value's length (2 bytes), the value.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping

_STRING = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
PRELUDE_AND_CRCS = _PRELUDE.size + 2 * _CRC.size


def message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers (names and values under 256 and 65536
    bytes, as the encoding allows; ValueError otherwise)."""
    encoded = bytearray()
    for name, text in headers.items():
        raw_name, raw_value = name.encode("utf-8"), text.encode("utf-8")
        if len(raw_name) > 255 or len(raw_value) > 65535:
            raise ValueError(f"event-stream header {name!r} is too long")
        encoded += bytes((len(raw_name),)) + raw_name + bytes((_STRING,))
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    prelude = _PRELUDE.pack(PRELUDE_AND_CRCS + len(encoded) + len(payload), len(encoded))
    head = prelude + _CRC.pack(zlib.crc32(prelude)) + encoded
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, _CRC.pack(crc)))


def _event(event_type: str, content_type: str, payload: bytes) -> bytes:
    return message({":event-type": event_type, ":content-type": content_type,
                    ":message-type": "event"}, payload)


def payload_chunk(data: bytes) -> bytes:
    """A `PayloadChunk` event: part of the function's response, as it streamed it."""
    return _event("PayloadChunk", "application/octet-stream", data)


def invoke_complete(error_code: str | None = None, error_details: str | None = None,
                    log_result: str | None = None) -> bytes:
    """The `InvokeComplete` event that ends every stream; ErrorCode and ErrorDetails when the
    function failed, LogResult (base64 of the log's tail) when the caller asked for it."""
    body: dict[str, str] = {}
    if error_code is not None:
        body["ErrorCode"] = error_code
        body["ErrorDetails"] = error_details or ""
    if log_result:
        body["LogResult"] = log_result
    return _event("InvokeComplete", "application/json",
                  json.dumps(body, separators=(",", ":")).encode("utf-8"))
