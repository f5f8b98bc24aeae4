"""`forkric invoke`: one call to an Invoke API (forkric local, the RIE, ...), printed."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
from typing import TextIO

SHOWN_HEADERS = ("X-Amz-Function-Error", "X-Amz-Executed-Version", "x-amzn-RequestId",
                 "x-amzn-ErrorType", "Content-Type")


def payload(text: str) -> bytes:
    """The event: JSON text, or `@file` for a file's content."""
    if text.startswith("@"):
        with open(text[1:], "rb") as file:
            return file.read()
    return text.encode("utf-8")


def call(args: argparse.Namespace, body: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(args.host, args.port, timeout=900)
    headers = {"Content-Type": "application/json",
               "X-Amz-Invocation-Type": args.invocation_type}
    if args.log_type == "Tail":
        headers["X-Amz-Log-Type"] = "Tail"
    conn.request("POST", f"/2015-03-31/functions/{args.function}/invocations", body, headers)
    return conn.getresponse()


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


def main(args: argparse.Namespace) -> int:
    """0 for a 2xx answer without a function error, 1 otherwise."""
    try:
        body = payload(args.payload)
    except OSError as exc:
        print(f"forkric invoke: {exc}", file=sys.stderr)
        return 2
    try:
        response = call(args, body)
        answer = response.read()
    except OSError as exc:
        print(f"forkric invoke: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    show(response, answer, sys.stdout)
    ok = 200 <= response.status < 300 and not response.getheader("X-Amz-Function-Error")
    return 0 if ok else 1
