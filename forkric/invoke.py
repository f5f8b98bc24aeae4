"""`forkric invoke`: one call to an Invoke API (forkric local, the RIE, ...), printed.

Only a client: the standard library and forkric's base install, nothing of the local extra.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import time
from typing import BinaryIO, TextIO

from forkric.config import Config

SHOWN_HEADERS = ("X-Amz-Function-Error", "X-Amz-Executed-Version", "x-amzn-RequestId",
                 "x-amzn-ErrorType", "Content-Type")
READY_POLL_S = 0.1


class NotReady(Exception):
    """The service did not become ready in time; the text says what it last saw."""


def payload(text: str, stdin: BinaryIO | None = None) -> bytes:
    """The event, as `forkric invoke --payload` and `forkric load --event` take it: JSON text,
    `@file` for a file's content, `@-` for standard input. Raises OSError when unreadable."""
    if text == "@-":
        return (stdin or sys.stdin.buffer).read()
    if text.startswith("@"):
        with open(text[1:], "rb") as file:
            return file.read()
    return text.encode("utf-8")


def status(host: str, port: int, timeout: float = 5.0) -> dict[str, object] | None:
    """`GET /status` of forkric local; None when the server is not forkric local (404)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/status")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 404:
        return None
    found = json.loads(body)
    return found if isinstance(found, dict) else {}


def wait_ready(host: str, port: int, timeout_s: float, say: TextIO | None = None,
               named: str = "--wait-ready") -> None:
    """Wait until forkric local says `"ready": true` (every worker polls), or until its
    handler failed to initialise (its invocations then answer the init error at once). A server
    that has no /status (the RIE, Lambda) counts as ready. Raises NotReady past `timeout_s`,
    whose advice names the wait as the user set it (`named`: its flag or variable)."""
    deadline = time.monotonic() + timeout_s
    told = False
    last = "no answer"
    while True:
        try:
            found = status(host, port)
        except OSError as exc:
            last = f"{exc.strerror or exc} (is forkric local running there?)"
        except (ValueError, http.client.HTTPException) as exc:  # not JSON, or not HTTP
            last = str(exc) or type(exc).__name__
        else:
            runtime = found.get("runtime") if found is not None else None
            if found is None or found.get("ready") or (
                    isinstance(runtime, dict) and runtime.get("init_failed")):
                return
            last = ("its workers are still starting (importing the handler; a slow import "
                    f"needs a longer {named})")
        if time.monotonic() >= deadline:
            raise NotReady(f"{host}:{port} was not ready after {timeout_s:g} s: {last}")
        if not told and say is not None:
            say.write(f"waiting up to {timeout_s:g} s for {host}:{port} to be ready\n")
            say.flush()
            told = True
        time.sleep(READY_POLL_S)


def call(cfg: Config, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=900)
    headers = {"Content-Type": "application/json",
               "X-Amz-Invocation-Type": cfg.invocation_type}
    if cfg.log_type == "Tail":
        headers["X-Amz-Log-Type"] = "Tail"
    try:
        conn.request("POST", f"/2015-03-31/functions/{cfg.function_name}/invocations", body,
                     headers)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def unreachable(cfg: Config, exc: Exception) -> str:
    """One line for a call that got no HTTP answer: refused, reset, timed out, not HTTP."""
    where = f"http://{cfg.host}:{cfg.port}"
    if isinstance(exc, ConnectionRefusedError):
        return (f"cannot connect to {where}: nothing listens there (start `forkric local "
                f"HANDLER`, or name its address with {cfg.named('port')} / "
                f"{cfg.named('host')})")
    if isinstance(exc, http.client.HTTPException):
        said = str(exc).strip()[:80]  # BadStatusLine's text is the line itself, newline and all
        return f"{where} did not answer as an HTTP server ({type(exc).__name__}: {said!r})"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot call {where}: {reason or type(exc).__name__}"


def show(response: http.client.HTTPResponse, body: bytes, out: TextIO) -> None:
    out.write(f"HTTP {response.status} {response.reason}\n")
    for name in SHOWN_HEADERS:
        value = response.getheader(name)
        if value is not None:
            out.write(f"{name}: {value}\n")
    log = response.getheader("X-Amz-Log-Result")
    if log:
        out.write("--- log tail ---\n")
        out.write(base64.b64decode(log).decode("utf-8", "replace"))
    out.write("--- body ---\n")
    out.write(pretty(body) + "\n")


def pretty(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def main(cfg: Config) -> int:
    """0 for a 2xx answer without a function error; 1 for an error answer or an unreachable
    service; 2 for a payload that cannot be read."""
    try:
        body = payload(cfg.payload)
    except OSError as exc:
        print(f"forkric invoke: cannot read {cfg.named('payload')} {cfg.payload}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        if cfg.wait_ready_s:
            wait_ready(cfg.host, cfg.port, cfg.wait_ready_s, sys.stderr, cfg.named("wait_ready_s"))
        response, answer = call(cfg, body)
    except NotReady as exc:
        print(f"forkric invoke: {exc}", file=sys.stderr)
        return 1
    except (OSError, http.client.HTTPException) as exc:
        print(f"forkric invoke: {unreachable(cfg, exc)}", file=sys.stderr)
        return 1
    show(response, answer, sys.stdout)
    ok = 200 <= response.status < 300 and not response.getheader("X-Amz-Function-Error")
    return 0 if ok else 1
