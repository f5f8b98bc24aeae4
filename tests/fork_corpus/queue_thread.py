"""A thread started at import consumes a queue that the handler feeds (a background flusher)."""

import os
import queue
import threading

WORK = queue.Queue()
OUT = os.path.join(os.environ["CORPUS_SCRATCH"], "queue_thread.log")


def consume():
    while True:
        token = WORK.get()
        with open(OUT, "a") as out:
            out.write(f"token {token}\n")


threading.Thread(target=consume, name="flusher", daemon=True).start()


def handler(event, context):
    WORK.put(event["token"])
    return {"token": event["token"], "pid": os.getpid(), "written_to": "queue_thread.log"}
