"""A ThreadPoolExecutor used at import (parallel model loading), reused per invocation."""

import os
from concurrent.futures import ThreadPoolExecutor

POOL = ThreadPoolExecutor(4)
PARTS = list(POOL.map(lambda i: i * i, range(8)))


def handler(event, context):
    token = int(event["token"])
    total = sum(POOL.map(lambda i: i + token, range(4), timeout=5))
    return {"token": str((total - 6) // 4), "pid": os.getpid()}
