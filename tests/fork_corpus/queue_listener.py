"""A logging QueueListener started at import; each invocation logs its token through it."""

import logging
import logging.handlers
import os
import queue

RECORDS = queue.Queue()
TARGET = logging.FileHandler(os.path.join(os.environ["CORPUS_SCRATCH"], "listener.log"))
LISTENER = logging.handlers.QueueListener(RECORDS, TARGET)
LISTENER.start()
LOG = logging.getLogger("corpus.listener")
LOG.propagate = False
LOG.addHandler(logging.handlers.QueueHandler(RECORDS))
LOG.setLevel(logging.INFO)


def handler(event, context):
    LOG.info("token %s", event["token"])
    return {"token": event["token"], "pid": os.getpid(), "written_to": "listener.log"}
