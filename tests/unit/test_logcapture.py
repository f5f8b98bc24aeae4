"""forkric local's log capture on real Unix sockets: dead workers must not pile up."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from forkric.local.logcapture import LogCapture


@pytest.mark.parametrize("unread", [False, True])
def test_a_dead_worker_is_kept_only_while_its_lines_may_be_claimed(tmp_path: Path,
                                                                   unread: bool) -> None:
    """Every dead worker left behind used to cost a scoreboard search on every invocation."""

    async def scenario() -> tuple[int, int]:
        echo = io.StringIO()
        capture = LogCapture(str(tmp_path / "log.sock"), lambda: None, echo)
        capture.start()
        loop = asyncio.get_running_loop()
        streams = []
        for _ in range(2):  # a worker's stdout and stderr
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await loop.sock_connect(conn, capture.path)
            streams.append(conn)
        while not capture.workers:
            await asyncio.sleep(0.01)
        if unread:
            streams[0].sendall(b"printed\n")
            while not echo.getvalue():
                await asyncio.sleep(0.01)
        while_alive = len(capture.workers)
        for conn in streams:
            conn.close()
        while any(not s.closed for w in capture.workers.values() for s in w.streams):
            await asyncio.sleep(0.01)
        left = len(capture.workers)
        capture.close()
        return while_alive, left

    while_alive, left = asyncio.run(scenario())
    assert while_alive == 1
    # With unread lines it waits for the report of its invocation; otherwise it is gone at once.
    assert left == (1 if unread else 0)
