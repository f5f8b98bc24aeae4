"""gc.disable() at import: the handler expects the collector off."""

import gc
import os

gc.disable()


def handler(event, context):
    return {"token": event["token"] if not gc.isenabled() else "collector on",
            "pid": os.getpid()}
