"""A handler whose process dies on a fraction of calls, as a native-extension crash would.

CRASH_RATE (default 0.05) is the fraction of calls that die; CRASH_HOW (default `exit`) is how:
`exit` (os._exit(3): "exit status 3"), `kill` (SIGKILL: "signal: killed"), `segv` (SIGSEGV), or
`raise` (an ordinary exception: the process lives). An event may override both:
{"crash_rate": 1.0, "crash_how": "kill"}.
"""

from __future__ import annotations

import os
import random
import signal
from typing import Any

CRASH_RATE = float(os.environ.get("CRASH_RATE", "0.05"))
CRASH_HOW = os.environ.get("CRASH_HOW", "exit")


class CrashyError(RuntimeError):
    """The `raise` way of failing: a function error, the worker lives on."""


def crash(how: str) -> None:
    if how == "raise":
        raise CrashyError("the crashy handler failed on purpose")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    os._exit(3)


def handler(event: Any, context: Any) -> dict[str, str]:
    options = event if isinstance(event, dict) else {}
    if random.random() < float(options.get("crash_rate", CRASH_RATE)):
        crash(str(options.get("crash_how", CRASH_HOW)))
    return {"status": "survived"}
