"""Which process is at the other end of a loopback TCP connection (Linux): the Runtime API
serves only the runtime's own processes.

A TCP socket on loopback has no SO_PEERCRED; the kernel gives the inode of the peer's socket
(asked by its four-tuple over NETLINK_SOCK_DIAG, about 12 us; else found in the table of TCP
sockets, /proc/net/tcp, whose read grows with every socket of the machine: 93-252 ms with
10,500 in TIME_WAIT, measured), and a process holds it when one of its file descriptors links
to `socket:[inode]`. Only the runtime's processes are searched, so a check costs one lookup and
a few dozen readlinks, once per connection (a streamed response closes its connection, so each
streamed invocation brings one).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
from collections.abc import Iterable

TCP_TABLE = "/proc/net/tcp"
# <linux/sock_diag.h>, <linux/inet_diag.h>, <linux/netlink.h>
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_ID = slice(20, 56)  # the answer's ports and addresses (after nlmsghdr and 4 bytes of flags)
_INODE = 16 + 4 + 48 + 16  # the answer's idiag_inode
SUPPORTED = sys.platform.startswith("linux") and os.path.exists(TCP_TABLE)


def _hex(address: tuple[str, int]) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address in host byte order, the port."""
    host, port = address[0], address[1]
    return f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"


def socket_inode(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The inode of the socket at `peer` connected to `ours` (IPv4), or None if none is."""
    try:
        return _diag_inode(peer, ours)
    except OSError:  # no NETLINK_SOCK_DIAG here (a sandbox, another system): read the table
        return _table_inode(peer, ours)


def _diag_inode(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """One exact lookup by four-tuple (struct inet_diag_req_v2, no dump); OSError when the
    system does not answer it."""
    sockid = (struct.pack(">HH", peer[1], ours[1]) + socket.inet_aton(peer[0]) + bytes(12)
              + socket.inet_aton(ours[0]) + bytes(12)
              + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE))
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(1.0)
        netlink.sendto(header + request, (0, 0))
        answer = netlink.recv(65536)
    if struct.unpack_from("=H", answer, 4)[0] == _NLMSG_ERROR or len(answer) < _INODE + 4:
        return None
    if answer[_ID] != sockid[:36]:  # a listener matched, not this connection
        return None
    inode: int = struct.unpack_from("=I", answer, _INODE)[0]
    return inode


def _table_inode(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
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
