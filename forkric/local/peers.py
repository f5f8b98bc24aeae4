"""Which process is at the other end of a loopback TCP connection (Linux): the Runtime API
serves only the runtime's own processes.

A TCP socket on loopback has no SO_PEERCRED; the kernel's table of TCP sockets
(/proc/net/tcp) gives the inode of the peer's socket, and a process holds it when one of its
file descriptors links to `socket:[inode]`. Only the runtime's processes are searched, so a
check costs one read of that table and a few dozen readlinks, once per connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterable

TCP_TABLE = "/proc/net/tcp"
SUPPORTED = sys.platform.startswith("linux") and os.path.exists(TCP_TABLE)


def _hex(address: tuple[str, int]) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address in host byte order, the port."""
    host, port = address[0], address[1]
    return f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"


def socket_inode(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The inode of the socket at `peer` connected to `ours` (IPv4), or None if none is."""
    local, remote = _hex(peer), _hex(ours)
    with contextlib.suppress(OSError, ValueError), open(TCP_TABLE) as table:
        next(table)  # the column names
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[9])
    return None


def holder(inode: int, pids: Iterable[int]) -> int | None:
    """The first of `pids` with a file descriptor on socket `inode`, or None."""
    target = f"socket:[{inode}]"
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"{folder}/{fd}") == target:
                    return pid
    return None
