"""A handler that does, on demand, each thing a supervisor must survive."""

import ctypes
import os
import signal
import sys
import time

VERSION = 1
IMPORTED_IN = os.getpid()
_held: list[bytes] = []


def _mark(event):
    if event.get("marker"):
        with open(event["marker"], "w") as file:
            file.write(str(os.getpid()))


def handler(event, context):
    action = event.get("action", "echo")
    _mark(event)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "segv":
        ctypes.string_at(0)
    elif action == "exit":
        os._exit(3)
    elif action == "sysexit":
        sys.exit(5)
    elif action == "abort":
        os.abort()
    elif action == "sleep":
        time.sleep(event["seconds"])
    elif action == "hang":
        while True:
            time.sleep(0.05)
    elif action == "leak":
        _held.append(b"x" * (event["kb"] * 1024))
    elif action == "oom":
        while True:
            _held.append(b"x" * (16 * 1024 * 1024))
    return {"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN,
            "version": VERSION, "held_kb": sum(map(len, _held)) // 1024}
