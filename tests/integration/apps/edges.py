"""A handler doing, on demand, each thing the supervisor-worker protocol must hold against (issue
11). At import, as users do: an atexit hook and a SIGTERM handler (AWS's graceful-shutdown
sample), a SIGUSR1 handler; each leaves a marker file per process in $EDGES_MARKERS."""

import atexit
import ctypes
import os
import signal
import sys
import time

MARKERS = os.environ.get("EDGES_MARKERS", "")
STARTED = os.environ.get("EDGES_STARTED", "")  # a folder: one empty file per invocation started
IMPORTED_IN = os.getpid()
_held = []


def _mark(what):
    if MARKERS:
        with open(os.path.join(MARKERS, f"{what}-{os.getpid()}"), "w") as file:
            file.write(str(os.getpid()))


def _exit_gracefully(signum, frame):
    print(f"[runtime] SIGTERM received in {os.getpid()}", flush=True)
    _mark("sigterm")
    sys.exit(0)


def _usr1(signum, frame):
    _mark("usr1")


signal.signal(signal.SIGTERM, _exit_gracefully)
signal.signal(signal.SIGUSR1, _usr1)
atexit.register(lambda: (_mark("atexit"), print(f"atexit ran in {os.getpid()}", flush=True)))


def _poll_and_leave(seconds):
    """Long-poll the Runtime API as a worker does, and leave (reset, as a stopping worker does)
    once an answer is ready to read, without reading it: the race of a worker that leaves its
    poll as an invocation is written to it, made certain. True if an answer came."""
    import select
    import socket
    import struct

    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        readable, _, _ = select.select([sock], [], [], seconds)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return bool(readable)


def handler(event, context):
    if STARTED:
        open(os.path.join(STARTED, context.aws_request_id), "w").close()
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "exit":
        sys.exit(event.get("code"))
    elif action == "os_exit":
        os._exit(event["code"])
    elif action == "kill":
        os.kill(os.getpid(), getattr(signal, event.get("signal", "SIGKILL")))
        time.sleep(5)
    elif action == "segv":
        ctypes.string_at(0)
    elif action == "abort":
        os.abort()
    elif action == "fork":
        child = os.fork()
        if child == 0 and event.get("child_sleeps"):
            _mark("forked")
            time.sleep(600)
        return {"pid": os.getpid(), "forked": child}
    elif action == "sleep":
        time.sleep(event["seconds"])
    elif action == "hang":
        while True:
            time.sleep(0.05)
    elif action == "leak":
        _held.append(b"x" * (event["kb"] * 1024))
    elif action == "interrupt":
        raise KeyboardInterrupt
    elif action == "poll_and_leave":
        return {"read": _poll_and_leave(event.get("seconds", 20))}
    elif action == "big_error":
        raise ValueError("x" * event["bytes"])
    return {"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN}
