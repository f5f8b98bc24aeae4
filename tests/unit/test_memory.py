"""forkric.memory: RSS from /proc, USS and PSS from psutil."""

from __future__ import annotations

import os

import psutil
import pytest

from forkric import memory


def test_rss_matches_psutil() -> None:
    ours = memory.rss_kb()
    theirs = psutil.Process().memory_info().rss // 1024
    assert ours > 0
    assert abs(ours - theirs) < max(theirs // 10, 4096)


def test_rss_of_another_pid() -> None:
    assert memory.rss_kb(os.getpid()) > 0
    with pytest.raises((FileNotFoundError, ProcessLookupError)):
        memory.rss_kb(2**22 + 12345)


def test_usage_orders() -> None:
    usage = memory.usage()
    assert 0 < usage.uss_kb <= usage.rss_kb
    assert usage.uss_kb <= usage.pss_kb <= usage.rss_kb


def test_usage_grows_with_private_memory() -> None:
    before = memory.usage().uss_kb
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    after = memory.usage().uss_kb
    assert after - before > 50 * 1024
    del block
