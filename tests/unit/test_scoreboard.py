"""forkric.scoreboard: slots, states, counters, and a file-backed board read by another process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forkric.protocol import Exit, SlotState
from forkric.scoreboard import CAPACITY, Scoreboard, WorkerSlot

from .conftest import run_python


def test_create_anonymous() -> None:
    board = Scoreboard.create(capacity=4)
    assert board.capacity == 4
    assert board.slots() == []
    status = board.status()
    assert status["supervisor_pid"] == os.getpid()
    assert status["slots"] == []
    assert board.counters() == {"recycles": 0, "crashes": 0, "kills": 0, "spawns": 0,
                                "workers": 0}
    assert Scoreboard.create().capacity == CAPACITY


def test_prepare_claim_busy_done_memory() -> None:
    board = Scoreboard.create(capacity=3)
    board.prepare(1)
    slot = board.slot(1)
    assert (slot.pid, slot.state, slot.request_id, slot.invocations) == (
        0, SlotState.STARTING, "", 0)
    assert slot.started > 0
    worker = WorkerSlot(board, 1)
    worker.claim(4242)
    assert board.slot(1).pid == 4242
    worker.idle()
    assert board.slot(1).state == SlotState.IDLE
    worker.busy("8f2c-request-id", 1_700_000_000_123)
    slot = board.slot(1)
    assert (slot.state, slot.request_id, slot.deadline_ms) == (
        SlotState.BUSY, "8f2c-request-id", 1_700_000_000_123)
    worker.done()
    worker.memory(123_456, 7_890)
    slot = board.slot(1)
    assert (slot.state, slot.invocations, slot.rss_kb, slot.uss_kb, slot.pid) == (
        SlotState.IDLE, 1, 123_456, 7_890, 4242)
    worker.busy("short", 5)
    assert board.slot(1).request_id == "short"  # a shorter id leaves no tail of the old one
    worker.done()
    assert board.slot(1).invocations == 2 == worker.served
    worker.exiting(Exit.RECYCLE)
    assert (board.slot(1).state, board.slot(1).announced) == (SlotState.EXITING, 90)
    # neighbours are untouched
    assert board.slot(0).state == SlotState.EMPTY and board.slot(2).state == SlotState.EMPTY
    assert [s.index for s in board.slots()] == [1]
    board.clear(1)
    assert board.slot(1).state == SlotState.EMPTY and board.slot(1).pid == 0


def test_long_and_non_ascii_request_ids() -> None:
    board = Scoreboard.create(capacity=1)
    worker = WorkerSlot(board, 0)
    worker.busy("x" * 100, 1)
    assert board.slot(0).request_id == "x" * 64
    worker.busy("é-id", 1)
    assert board.slot(0).request_id == "?-id"


def test_counters() -> None:
    board = Scoreboard.create(capacity=2)
    board.count("spawns")
    board.count("spawns", 3)
    board.count("crashes")
    board.count("workers", 2)
    board.count("workers", -5)  # never below zero
    board.count("kills")
    board.count("recycles", 7)
    assert board.counters() == {"recycles": 7, "crashes": 1, "kills": 1, "spawns": 4,
                                "workers": 0}
    with pytest.raises(ValueError):
        board.count("no-such-counter")


def test_the_slots_are_shared_with_a_forked_child() -> None:
    board = Scoreboard.create(capacity=2)
    board.prepare(0)
    pid = os.fork()
    if pid == 0:  # the child writes its own slot and leaves at once
        try:
            WorkerSlot(board, 0).busy("from-child", 99)
            board.count("spawns")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (board.slot(0).state, board.slot(0).request_id) == (SlotState.BUSY, "from-child")
    assert board.counters()["spawns"] == 1


READER = """
    import json, sys
    from forkric.scoreboard import Scoreboard
    board = Scoreboard.open(sys.argv[1])
    print(json.dumps(board.status()))
"""


def test_file_backed_board_read_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "board"
    board = Scoreboard.create(str(path), capacity=8)
    for index, pid in ((0, 111), (5, 222)):
        board.prepare(index)
        WorkerSlot(board, index).claim(pid)
    WorkerSlot(board, 5).busy("req-5", 1234)
    WorkerSlot(board, 0).memory(10, 2)
    board.count("spawns", 2)
    status = json.loads(run_python(READER, args=(str(path),)))
    assert status["supervisor_pid"] == os.getpid()
    assert status["spawns"] == 2
    by_index = {s["index"]: s for s in status["slots"]}
    assert set(by_index) == {0, 5}
    assert (by_index[5]["pid"], by_index[5]["state"], by_index[5]["request_id"],
            by_index[5]["deadline_ms"]) == (222, "busy", "req-5", 1234)
    assert (by_index[0]["rss_kb"], by_index[0]["uss_kb"]) == (10, 2)
    # the reader sees later writes too: the file is the shared memory
    reader = Scoreboard.open(str(path))
    WorkerSlot(board, 5).done()
    assert reader.slot(5).state is SlotState.IDLE and reader.slot(5).invocations == 1


def test_open_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not-a-board"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(ValueError, match="not a forkric scoreboard"):
        Scoreboard.open(str(path))
