"""A fuzz of `forkric local`'s Invoke API (hypothesis): client contexts, trace ids, function
names, qualifiers and bodies, each request also sent to the real RIE where both serve it, while
an innocent caller invokes all along. A fault in one invocation must fail that invocation only:
0 runtime restarts, 0 timeouts, every innocent call answered 200 (issue 15: one client context
stopped the runtime for everyone, another timed out without the handler running).

Bounded: a fixed number of examples, well under a minute here; the counts are printed."""

from __future__ import annotations

import base64
import collections
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.support import rie
from tests.support.local import Local, local

APP = Path(__file__).parent / "local_app"
EXAMPLES = 600  # 6 s here when quiet, 25 s under other test runs; no shrinking: bounded
TIMEOUT_S = 30  # the function timeout of both services: only a hang times out, not a busy machine
pytestmark = pytest.mark.timeout(180)

# Any character, lone surrogates and DEL included (hypothesis leaves surrogates out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8)
CLIENT_ATTRIBUTES = ("installation_id", "app_title", "app_version_name", "app_version_code",
                     "app_package_name")
CLIENT = st.fixed_dictionaries({}, optional={name: ANY_TEXT for name in CLIENT_ATTRIBUTES})
CONTEXTS = st.fixed_dictionaries({}, optional={
    "custom": st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=3),
    "env": st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3),
    "client": CLIENT})
# What a header's value may hold on the wire: no control character but tab, no DEL.
HEADER_BYTES = st.binary(max_size=40).map(
    lambda raw: raw.translate(None, bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"))
NAMES = st.one_of(st.sampled_from(["function", "my-fn", "fn.v2", "arn:aws:lambda:eu-west-1:"
                                   "123456789012:function:fn"]), ANY_TEXT)


@st.composite
def client_context_headers(draw: st.DrawFn) -> bytes | None:
    """None, a valid one in any JSON spelling, or bytes that are not one."""
    kind = draw(st.sampled_from(["none", "valid", "valid", "valid", "junk"]))
    if kind == "none":
        return None
    if kind == "junk":
        return draw(st.one_of(HEADER_BYTES, st.binary(max_size=40).map(base64.b64encode)))
    context = draw(CONTEXTS)
    ascii_only = draw(st.booleans())
    text = json.dumps(context, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, 1])))
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its escape is JSON a caller can send
        raw = json.dumps(context).encode()
    return base64.b64encode(raw)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    return {"client_context": draw(client_context_headers()),
            "trace": draw(st.none() | HEADER_BYTES),
            "name": draw(NAMES),
            "qualifier": draw(st.none() | st.sampled_from(["$LATEST", "prod", "7"]) | ANY_TEXT),
            "body": draw(st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                                   st.binary(max_size=64)))}


def post(port: int, path: str, body: bytes, headers: dict[str, bytes]) -> tuple[str, bytes]:
    """(the answer's kind: its status and error header, if any; its body)"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S + 30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, raw in headers.items():
            conn.putheader(name, raw)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        error = response.getheader("x-amzn-ErrorType") or (
            "function error" if response.getheader("X-Amz-Function-Error") else "")
        return f"{response.status} {error}".strip(), response.read()
    finally:
        conn.close()


def path_of(name: str, qualifier: str | None) -> str:
    query = "" if qualifier is None else "?Qualifier=" + quote(qualifier, safe="",
                                                               errors="surrogatepass")
    return f"/2015-03-31/functions/{quote(name, safe='', errors='surrogatepass')}/invocations" \
        + query


def expected_view(context: bytes) -> dict[str, Any]:
    sent = json.loads(base64.b64decode(context))
    client = sent.get("client")
    if client is not None:  # the handler sees each of the Client's attributes, None if not sent
        client = {name: client.get(name) for name in CLIENT_ATTRIBUTES}
    return {"custom": sent.get("custom"), "env": sent.get("env"), "client": client}


class Innocent(threading.Thread):
    """A caller invoking all along, whose every answer must be a plain 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.answers: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        while not self.stop.is_set():
            reply = rie.invoke(self.port, {"innocent": True})
            ok = reply.status == 200 and "x-amz-function-error" not in reply.headers
            self.answers["200" if ok else f"{reply.status} {reply.body[:80]!r}"] += 1


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Local, Any]]:
    folder = tmp_path_factory.mktemp("fuzz")
    try:
        rie.binary()
    except Exception as exc:  # no network and no cache: nothing to compare with
        pytest.skip(f"the RIE is not available: {exc}")
    with local("app.echo", APP, workers=2, timeout=TIMEOUT_S,
               log_path=folder / "local.log") as service, \
            rie.classic([sys.executable, "-m", "forkric", "app.echo"], APP,
                        env=rie.base_env(AWS_LAMBDA_FUNCTION_TIMEOUT=str(TIMEOUT_S)),
                        log_path=folder / "rie.log") as emulator:
        yield service, emulator


def test_fuzz_the_invoke_api_against_the_rie(services: tuple[Local, Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    service, emulator = services
    counts: collections.Counter[str] = collections.Counter()
    mismatches: list[str] = []
    innocent = Innocent(service.port)
    innocent.start()
    began = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(requests())
    @example({"client_context": None, "trace": b"\xa1 ", "name": "INF",  # found: a kept blank
              "qualifier": "$LATEST", "body": b"{}"})
    def one(request: dict[str, Any]) -> None:
        headers = {"Content-Type": b"application/json"}
        if request["client_context"] is not None:
            headers["X-Amz-Client-Context"] = request["client_context"]
        if request["trace"] is not None:
            headers["X-Amzn-Trace-Id"] = request["trace"]
        kind, body = post(service.port, path_of(request["name"], request["qualifier"]),
                          request["body"], headers)
        counts[kind] += 1
        if kind == "404" and (not request["name"] or "/" in request["name"]):
            return  # no such route: the name is empty or spans path segments
        assert kind in ("200", "200 function error", "400 ValidationException",
                        "400 InvalidRequestContentException"), (request, kind, body)
        if not kind.startswith("200"):
            return
        # The same request where the RIE serves it (its one function name; no validation).
        # An empty payload is invoked with {}, as Lambda does: ask the RIE the same.
        theirs_kind, theirs = post(emulator.port, rie.INVOKE_PATH, request["body"] or b"{}",
                                   headers)
        counts["compared with the RIE"] += 1
        if kind == "200 function error" and error_type(theirs) != error_type(body):
            mismatches.append(f"{request!r}: ours {body[:200]!r}, RIE {theirs[:200]!r}")
        if kind == "200":
            ours_seen = json.loads(body)
            if request["client_context"]:
                assert {k: ours_seen[k] for k in ("custom", "env", "client")} \
                    == expected_view(request["client_context"])
            assert ours_seen["trace"] == expected_trace(request["trace"])
            if theirs_kind != "200":
                mismatches.append(f"{request!r}: RIE {theirs_kind} {theirs[:200]!r}")
                return
            theirs_seen = json.loads(theirs)
            # The RIE names every function alike and passes no trace id on: those are ours only.
            differ = {key: (value, theirs_seen.get(key)) for key, value in ours_seen.items()
                      if key not in ("arn", "trace") and value != theirs_seen.get(key)}
            if differ:
                mismatches.append(f"{request!r}: (ours, RIE) {differ!r}")

    try:
        one()
    finally:
        innocent.stop.set()
        innocent.join(30)
    state = service.status()
    took = time.monotonic() - began
    with capsys.disabled():  # the counts, in make test's output too
        print(f"\nfuzz: {sum(counts.values()) - counts['compared with the RIE']} requests in "
              f"{took:.1f} s; answers {dict(counts)}; "
              f"innocent caller {dict(innocent.answers)}; runtime starts "
              f"{state['runtime']['starts']}, timeouts {state['invocations']['timeouts']}; "
              f"{len(mismatches)} differences from the RIE")
    assert state["runtime"]["starts"] == 1
    assert state["invocations"]["timeouts"] == 0
    assert set(innocent.answers) == {"200"}, innocent.answers
    assert mismatches == [], "\n".join(mismatches[:5])


def error_type(body: bytes) -> str:
    """An error answer's errorType, or the body itself when it is not JSON (a timeout's text)."""
    try:
        return str(json.loads(body)["errorType"])
    except (ValueError, KeyError, TypeError):
        return body[:100].decode(errors="replace")


def expected_trace(sent: bytes | None) -> str | None:
    """The trace id as the handler sees it: the header's value without its surrounding blanks,
    read as UTF-8 (else Latin-1, as the worker reads a header), absent when empty."""
    value = (sent or b"").strip(b" \t")
    if not value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
