"""The real AWS RIE (classic mode) as the Runtime API peer of a streaming worker: it must take
forkric's streamed POST (chunked, the streaming mode header, declared trailers). The classic RIE
answers its Invoke API buffered: the chunks joined; an error trailer is, as Lambda documents,
"treated as a successful response" there, the body ending where the handler failed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rie import Emulator, classic

APP = Path(__file__).resolve().parents[1] / "integration" / "stream_app"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    log = tmp_path_factory.mktemp("rie-stream") / "rie.log"
    with classic([sys.executable, "-m", "forkric", "app.handler"], APP, log_path=log) as running:
        yield running


def test_the_rie_takes_a_streamed_response(rie: Emulator) -> None:
    reply = rie.invoke({"count": 3})
    assert reply.status == 200
    assert reply.body == b"chunk 0\nchunk 1\nchunk 2\n"
    http = rie.invoke({"kind": "http"})
    prelude, separator, body = http.body.partition(b"\0" * 8)
    assert separator and body == "<h1>h\u00e9llo</h1>".encode() and b'"statusCode":201' in prelude


def test_the_rie_takes_error_trailers(rie: Emulator) -> None:
    reply = rie.invoke({"count": 3, "fail_at": 2})
    assert reply.status == 200
    assert reply.body == b"chunk 0\nchunk 1\n"
    after = rie.invoke({"count": 1})  # the runtime serves on
    assert after.body == b"chunk 0\n"


def test_the_rie_takes_a_long_error_in_the_trailers(rie: Emulator) -> None:
    """Go's net/http (the RIE's, and the Runtime API's) reads trailers only within its 4 KiB
    read buffer ("suspiciously long trailer after chunked body"): a long error must still fit."""
    reply = rie.invoke({"count": 3, "fail_at": 2, "message": "m" * 20000})
    assert reply.status == 200
    assert reply.body == b"chunk 0\nchunk 1\n"
    after = rie.invoke({"count": 1})  # the runtime serves on
    assert after.body == b"chunk 0\n"
