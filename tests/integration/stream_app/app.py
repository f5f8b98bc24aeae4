"""One streaming handler for the response-streaming tests: what it streams is chosen by the
event's "kind"."""

import asyncio
import json
import os
import signal
import time

from forkric import StreamingResponse, response_stream


def chunks(event):
    """`count` chunks; `fail_at` raises before that chunk ("end": after the last); `kill_at`
    kills this worker before that chunk; `wait_for` waits for a file before the second chunk;
    `gap` seconds between chunks; `done` is a file written once the generator ran to its end;
    `message`: the error's message instead of the usual one."""
    count = int(event.get("count", 3))
    gap = float(event.get("gap", 0))
    fail_at = event.get("fail_at")
    for index in range(count):
        if fail_at == index:
            raise ValueError(event.get("message") or f"failed before chunk {index}")
        if event.get("kill_at") == index:
            os.kill(os.getpid(), signal.SIGKILL)
        if index == 1 and event.get("wait_for"):
            while not os.path.exists(event["wait_for"]):
                time.sleep(0.01)
        elif index and gap:
            time.sleep(gap)
        yield f"chunk {index}\n"
    if fail_at == "end":
        raise RuntimeError("failed after the last chunk")


def http(event):
    def body():
        yield b"<h1>"
        yield "h\u00e9llo"
        yield b"</h1>"

    return StreamingResponse(body(), status_code=201,
                             headers={"content-type": "text/html", "x-custom": "1"},
                             cookies=["a=1; Path=/"])


async def agen(event):
    for index in range(3):
        await asyncio.sleep(0)
        yield f"async {index}\n".encode()


def big(event):
    """`mb` MiB in 64 KiB chunks, each made afresh; then writes the `done` file, if named."""
    block = b"x" * 65536
    for _ in range(int(event.get("mb", 1)) * 16):
        yield bytes(block)
    if event.get("done"):
        with open(event["done"], "w") as file:
            file.write(str(os.getpid()))


def bad_chunk(event):
    yield b"ok"
    yield 42


def value(event):
    return {"plain": "value"}


KINDS = {"chunks": chunks, "http": http, "agen": agen, "big": big, "bad_chunk": bad_chunk,
         "value": value}


@response_stream
def handler(event, context):
    if event.get("version") == "2.0":  # a function URL's event: the parameters are its body
        event = json.loads(event.get("body") or "{}")
    return KINDS[event.get("kind", "chunks")](event)


def unmarked(event, context):
    yield b"a generator without the mark"
