"""SnapStart hooks, registered as a function would: decorators and direct calls with arguments.

Every hook appends to RAN (with the pid it ran in); the handler returns RAN, its own pid and its
parent's, so a test sees the order, where the hooks ran and which process served. SNAP_FAIL picks
a hook that raises: `before` (the first before-snapshot hook to run), `after` (the second
after-restore hook), `exit` (a before-snapshot hook calls sys.exit).
"""

import os
import random
import sys

from snapshot_restore_py import register_after_restore, register_before_snapshot

RAN = []
FAIL = os.environ.get("SNAP_FAIL", "")


def _ran(name):
    RAN.append([name, os.getpid()])


@register_before_snapshot
def close_connections():
    _ran("before:registered-first")


def flush(label, *, suffix=""):
    _ran(f"before:registered-second:{label}{suffix}")
    if FAIL == "before":
        raise ValueError("flush failed before the snapshot")
    if FAIL == "exit":
        sys.exit(3)


register_before_snapshot(flush, "cache", suffix="!")


@register_after_restore
def reseed():
    _ran("after:registered-first")
    random.seed()


def reconnect(label):
    _ran(f"after:registered-second:{label}")
    if FAIL == "after":
        raise ConnectionError("could not reconnect after the restore")


register_after_restore(reconnect, "db")


def handler(event, context):
    return {"ran": RAN, "pid": os.getpid(), "ppid": os.getppid()}
