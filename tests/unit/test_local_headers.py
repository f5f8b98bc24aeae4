"""What the service writes in a header, whatever a caller sent: always a value uvicorn writes and
the worker's parser reads (one that is not stopped the runtime, issue 15)."""

from __future__ import annotations

import base64
import re

from hypothesis import given
from hypothesis import strategies as st

from forkric.connection import _Reader
from forkric.local.asgi import Request, value
from forkric.local.service import FUNCTION_NAME, QUALIFIER, decode_client_context

# uvicorn's check as forkric local installs it (DEL allowed), and the one it must never fail.
NOT_IN_A_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f]")


@given(st.text())
def test_any_text_makes_a_header_value(text: str) -> None:
    raw = value(text)
    assert not NOT_IN_A_VALUE.search(raw)
    reader = _Reader()
    reader.parser.feed_data(b"HTTP/1.1 200 OK\r\nx-v: " + raw + b"\r\ncontent-length: 0\r\n\r\n")
    assert reader.done


# What llhttp lets into a header value: no control character but tab.
CONTROLS = bytes(range(0x09)) + bytes(range(0x0A, 0x20))
READ_VALUES = st.binary().map(lambda raw: raw.translate(None, CONTROLS))


@given(READ_VALUES)
def test_header_bytes_go_on_as_they_were_read(raw: bytes) -> None:
    """Request.header gives text for a header's bytes; value gives the same bytes back (the
    blanks around them are not part of a header's value)."""
    text = Request({"headers": [(b"x-v", raw)]}, None).header(b"x-v")  # type: ignore[arg-type]
    assert text is not None and value(text) == raw.strip(b" \t")


def test_client_context_is_carried_as_sent() -> None:
    sent = b'{"custom": {"a": "\\ud800", "b": "x\x7fy"},\n "env": {}}'
    assert decode_client_context(base64.b64encode(sent).decode()) == sent
    assert decode_client_context(base64.b64encode(b"[1]").decode()) is None
    assert decode_client_context("") == b""


def test_a_trailing_blank_after_a_byte_that_is_not_ascii_is_not_kept() -> None:
    """Found by the fuzz: llhttp kept the blank in b'\xa1 ', and the handler saw it."""
    text = Request({"headers": [(b"x-v", b"\xa1 ")]}, None).header(b"x-v")  # type: ignore[arg-type]
    assert text is not None and value(text) == b"\xa1"


def test_names_take_ascii_digits_only() -> None:
    """Python's \\d matches other scripts' digits; Lambda's patterns do not."""
    assert FUNCTION_NAME.fullmatch("arn:aws:lambda:us-east-1:012345678912:function:fn")
    assert not FUNCTION_NAME.fullmatch("arn:aws:lambda:us-east-\u0661:012345678912:function:fn")
    assert not FUNCTION_NAME.fullmatch("fn\u0663")
    assert not QUALIFIER.fullmatch("v\u0663")
