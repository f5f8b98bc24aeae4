"""A handler that ends its own process: `{"case": NAME}`. Under awslambdaric the whole runtime
dies and the RIE reports it; under forkric the supervisor reports the worker's death itself and
forks a new one. `ok` checks that the next invocation is served either way."""

from __future__ import annotations

import os
import sys
from typing import Any


def handler(event: Any, context: Any) -> Any:
    case = event["case"]
    print(f"exits: {case}")
    if case == "sys_exit_3":
        sys.exit(3)
    if case == "sys_exit_0":
        sys.exit(0)
    if case == "sys_exit_text":
        sys.exit("goodbye")
    if case == "os_exit_7":
        os._exit(7)
    if case == "keyboard_interrupt":
        raise KeyboardInterrupt("interrupt inside the handler")
    if case == "kill_self":
        os.kill(os.getpid(), 9)
    return {"case": case}
