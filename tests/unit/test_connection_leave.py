"""A worker leaving its long poll resets the connection, so that the Runtime API can tell an
invocation written to it was never read (forkric local then hands it to another worker). Real
sockets on loopback; the Runtime API's side is a bare accepted socket."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from forkric.connection import Connection, Interrupt, Interrupted


def test_leaving_a_long_poll_resets_the_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    connection = Connection("127.0.0.1", port, "test")
    left: list[BaseException] = []

    def poll() -> None:
        try:
            connection.request("GET", "/2018-06-01/runtime/invocation/next",
                               interrupt=Interrupt(wake_read, lambda: True))
        except BaseException as exc:  # the outcome is the test's subject
            left.append(exc)

    worker = threading.Thread(target=poll)
    worker.start()
    api, _ = listener.accept()
    with api, listener:
        api.settimeout(10)
        assert b"/invocation/next" in api.recv(4096)
        os.write(wake_write, b"\0")  # the stop: the worker leaves, no byte of an answer sent
        worker.join(10)
        assert left and isinstance(left[0], Interrupted), left
        # A FIN would read as b"" (a worker that read its invocation, then died); a reset is
        # the mark of an answer never read.
        with pytest.raises(ConnectionResetError):
            assert api.recv(4096) == b"", "closed with a FIN, not reset"
    os.close(wake_read)
    os.close(wake_write)
