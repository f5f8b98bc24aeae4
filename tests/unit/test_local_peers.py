"""Which process holds the other end of a loopback connection, and the service's checks of a
caller's address and names (forkric local, issue 15)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from forkric.local import answers, peers
from forkric.local.invocations import Invocation, Invocations
from forkric.local.service import _host_name, _is_loopback

pytestmark = pytest.mark.skipif(not peers.SUPPORTED, reason="/proc/net/tcp is Linux's")


def test_the_holder_of_a_loopback_connection_is_found() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        try:
            inode = peers.socket_inode(client.getsockname(), listener.getsockname())
            assert inode == os.fstat(client.fileno()).st_ino
            # sock_diag's exact lookup and the table's scan agree.
            assert peers._table_inode(client.getsockname(), listener.getsockname()) == inode
            assert peers.holder(inode, [os.getppid(), os.getpid()]) == os.getpid()
            assert peers.holder(inode, [os.getppid()]) is None
            # The accepted end is another socket: not the peer's.
            assert peers.socket_inode(accepted.getsockname(), client.getsockname()) != inode
        finally:
            client.close()
            accepted.close()


def test_no_inode_for_a_connection_that_is_not_there() -> None:
    assert peers.socket_inode(("127.0.0.1", 1), ("127.0.0.1", 2)) is None


def test_the_netlink_lookup_agrees_with_the_table() -> None:
    # Both ways find the client's own socket (its inode is what fstat says), and neither finds
    # the listener for a port nobody connected from.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        try:
            peer, ours = client.getsockname(), accepted.getsockname()
            assert peers._diag_inode(peer, ours) == peers._table_inode(peer, ours) \
                == os.fstat(client.fileno()).st_ino
            assert peers._diag_inode(("127.0.0.1", 1), ours) is None
        finally:
            client.close()
            accepted.close()


@pytest.mark.parametrize(("authority", "name"), [
    ("localhost:9000", "localhost"), ("[::1]:9000", "::1"), ("::1", "::1"),
    ("example", "example"), ("127.0.0.1", "127.0.0.1")])
def test_host_names(authority: str, name: str) -> None:
    assert _host_name(authority) == name


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("0.0.0.0", False), ("192.168.1.4", False), ("example", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def test_a_poll_that_leaves_is_not_handed_work() -> None:
    """A worker that leaves its long poll (its connection closed) must not take the next
    invocation with it: the next poller gets it."""

    async def scenario() -> tuple[bool, int]:
        invocations = Invocations(timeout_s=5, max_queue=10)
        leaving = asyncio.ensure_future(invocations.next())
        staying = asyncio.ensure_future(invocations.next())
        await asyncio.sleep(0)
        leaving.cancel()
        invocation = Invocation(function_name="f", payload=b"{}")
        assert invocations.submit(invocation)
        got = await asyncio.wait_for(staying, 5)
        invocations.finish(got.request_id, answers.success(b"{}", "application/json"))
        return got is invocation, len(invocations.pollers)

    assert asyncio.run(scenario()) == (True, 0)
