"""SIGHUP target: version 1 serves; the test rewrites BROKEN to True, and the new import's
workers then die at start (an at-fork hook that exits)."""

import os

BROKEN = False
if BROKEN:
    os.register_at_fork(after_in_child=lambda: os._exit(7))


def handler(event, context):
    return {"pid": os.getpid(), "broken": BROKEN}
