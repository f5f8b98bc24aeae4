"""Handlers for the `forkric local` tests: one behaviour each."""

import json
import logging
import os
import signal
import time

log = logging.getLogger()


def ok(event, context):
    print(f"hello from {context.aws_request_id}")
    if isinstance(event, dict) and event.get("touch"):
        with open(event["touch"], "w") as file:
            file.write(context.aws_request_id)
    return {"ok": True, "event": event}


def boom(event, context):
    raise ValueError("bad thing")


def slow(event, context):
    print(f"slow start {context.aws_request_id}")
    time.sleep(event.get("s", 1))
    log.info("slow done")
    return {"slept": event.get("s", 1), "pid": os.getpid()}


def die(event, context):
    print(f"about to die {context.aws_request_id}")
    os.kill(os.getpid(), signal.SIGKILL)


def kill_runtime(event, context):
    os.kill(os.getppid(), signal.SIGKILL)  # the supervisor: the whole runtime dies
    time.sleep(30)


def size(event, context):
    return {"length": len(event)}


def big(event, context):
    return "x" * event["n"]


def chatty(event, context):
    for number in range(event.get("lines", 200)):
        print(f"line {number} of {context.aws_request_id} " + "." * 40)
    return "done"


def ctx(event, context):
    client = context.client_context
    return {
        "custom": client.custom if client else None,
        "app_title": client.client.app_title if client and client.client else None,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
    }


def echo(event, context):
    """What the handler saw of a request: the fuzz test compares it with what was sent."""
    client = context.client_context
    return {
        "event": event,
        "custom": client.custom if client else None,
        "env": client.env if client else None,
        "client": ({name: getattr(client.client, name) for name in client.client.__slots__}
                   if client and client.client else None),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "arn": context.invoked_function_arn,
    }


def runtime_api_call(event, context):
    """From inside a worker (a process of the runtime, on a connection of its own): one call to
    the Runtime API, its status and body returned; with "s", a sleep as `slow`."""
    import http.client

    if "s" in event:
        return slow(event, context)

    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", event["path"], event.get("body", "{}").encode(),
                 {"Lambda-Runtime-Function-Error-Type": "Forged"})
    response = conn.getresponse()
    return {"status": response.status, "body": json.loads(response.read())}


def big_error(event, context):
    raise RuntimeError("x" * event["n"])


def long_line(event, context):
    """One log line of event["bytes"] bytes, without a newline."""
    import sys

    sys.stdout.write("x" * event["bytes"])
    sys.stdout.flush()
    return {"wrote": event["bytes"]}
