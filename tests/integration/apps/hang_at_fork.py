"""The first worker forked hangs in an at-fork hook (a deadlock, as a library's hook can make);
the next ones start. The marker file says which came first."""

import os
import time

MARKER = os.environ["EDGES_HANG_MARKER"]


def _maybe_hang():
    try:
        fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    while True:
        time.sleep(0.05)


os.register_at_fork(after_in_child=_maybe_hang)


def handler(event, context):
    return {"pid": os.getpid()}
