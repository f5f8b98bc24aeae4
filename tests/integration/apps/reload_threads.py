"""SIGHUP target whose import starts threads and adds a logging handler, as many real handlers
do: a ThreadPoolExecutor, and a QueueListener behind a QueueHandler on the root logger, whose
records go to RELOAD_RECORDS (a file opened for appending: one line per record, any process)."""

import concurrent.futures
import logging
import logging.handlers
import os
import queue

POOL = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="app-pool")
POOL.submit(pow, 2, 2).result()  # its threads start at import
QUEUE: queue.Queue = queue.Queue(-1)
LISTENER = logging.handlers.QueueListener(QUEUE, logging.FileHandler(os.environ["RELOAD_RECORDS"]))
LISTENER.start()
logging.getLogger().addHandler(logging.handlers.QueueHandler(QUEUE))
log = logging.getLogger("app")


def handler(event, context):
    log.warning("record %s", context.aws_request_id)
    queue_handlers = sum(isinstance(h, logging.handlers.QueueHandler)
                         for h in logging.getLogger().handlers)
    return {"pid": os.getpid(), "square": POOL.submit(pow, event.get("n", 0), 2).result(),
            "queue_handlers": queue_handlers}
