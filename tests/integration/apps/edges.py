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
    elif action == "big_error":
        raise ValueError("x" * event["bytes"])
    return {"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN}
