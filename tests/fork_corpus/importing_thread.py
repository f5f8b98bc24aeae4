"""sentry-sdk's pattern without the SDK: a thread started at import imports modules lazily, and
is often inside an import when the runtime forks (here a slow module, then a loop)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))


def background():
    import slow_module  # noqa: F401  (takes 0.5 s to import)
    while True:
        time.sleep(0.05)


threading.Thread(target=background, name="sdk-worker", daemon=True).start()
time.sleep(0.1)  # the import is under way when the module's import ends


def handler(event, context):
    import json  # noqa: F401  (a lazy import in the handler, as SDK code does)
    return {"token": event["token"], "pid": os.getpid()}
