"""The shared scoreboard: one slot per worker in a shared mmap made before the first fork.

Each slot has one writer at a time: the supervisor prepares it before forking a worker (state
`starting`, no pid), the worker alone writes it from its first instruction after the fork until it
dies (its pid first), and the supervisor clears it after reaping the worker. The supervisor only
reads a live worker's slot, to know which invocation a dead or stuck worker held. Backed by a file
(`--status-file`), other processes can read it too: `forkric local` serves it as its status
endpoint.

A worker writes the request id and deadline before it flips its state to busy, and the state
back to idle when done; a reader that sees `busy` therefore sees that invocation's fields. Likewise
it writes the exit status it announces before the state `exiting`.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import asdict, dataclass
from typing import Any

from forkric.protocol import Exit, SlotState

MAGIC = b"FKRC"
VERSION = 2
CAPACITY = 256

# magic, version, capacity, supervisor pid, started, recycles, crashes, kills, spawns, and the
# number of workers the supervisor wants
_HEADER = struct.Struct("<4sHHid5Q")
# pid, state, request id, deadline (epoch ms), invocations, rss kB, uss kB, started (epoch s),
# the exit status announced with `exiting`
_SLOT = struct.Struct("<iB64sqQQQdB")
_HOLDER = struct.Struct("<iB64s")  # the head of a slot: pid, state, request id
_PID_AT, _STATE_AT, _REQUEST_AT = 0, 4, 5
_SERVED_AT = struct.calcsize("<iB64sq")
_MEMORY_AT = _SERVED_AT + 8
_ANNOUNCED_AT = _SLOT.size - 1

# The states as numbers, for readers that compare many slots quickly.
EMPTY, STARTING, IDLE, BUSY, EXITING = (int(state) for state in SlotState)

_COUNTERS = ("recycles", "crashes", "kills", "spawns", "workers")


@dataclass
class Slot:
    """One slot as read at one moment: times in epoch seconds (`started`) and milliseconds
    (`deadline_ms`), memory in kB (as of the worker's last check, 0 before)."""

    index: int
    pid: int  # 0 until the forked worker writes its own
    state: SlotState
    request_id: str  # the invocation held while busy (ASCII, at most 64 characters)
    deadline_ms: int
    invocations: int
    rss_kb: int
    uss_kb: int
    started: float
    announced: int  # the exit status announced with `exiting`


class Scoreboard:
    """The whole board: a header of counters the supervisor keeps, then `capacity` slots.

    Safe to read from any process at any time (a torn read of a slot being written shows old and
    new fields mixed, never garbage); each slot is written by one process at a time (see above).
    """

    def __init__(self, buffer: mmap.mmap, capacity: int) -> None:
        self.buffer = buffer
        self.capacity = capacity

    @classmethod
    def create(cls, path: str = "", capacity: int = CAPACITY) -> Scoreboard:
        """A new scoreboard of `capacity` slots, anonymous or backed by `path` (truncated, 0644);
        made before any fork. OSError when the file cannot be made."""
        size = _HEADER.size + capacity * _SLOT.size
        if path:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, size)
                buffer = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        else:
            buffer = mmap.mmap(-1, size)
        board = cls(buffer, capacity)
        _HEADER.pack_into(buffer, 0, MAGIC, VERSION, capacity, os.getpid(), time.time(),
                          0, 0, 0, 0, 0)
        return board

    @classmethod
    def open(cls, path: str) -> Scoreboard:
        """Read another process's scoreboard from its file, read-only. ValueError when the file is
        not a scoreboard of this version, OSError when it cannot be read."""
        with open(path, "rb") as file:
            buffer = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
        magic, version, capacity = _HEADER.unpack_from(buffer, 0)[:3]
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path} is not a forkric scoreboard")
        return cls(buffer, capacity)

    def _offset(self, index: int) -> int:
        return _HEADER.size + index * _SLOT.size

    # The supervisor's side.

    def counters(self) -> dict[str, int]:
        """recycles, crashes, kills, spawns (totals since start) and workers (wanted now)."""
        values = _HEADER.unpack_from(self.buffer, 0)[5:]
        return dict(zip(_COUNTERS, values, strict=True))

    def count(self, name: str, delta: int = 1) -> None:
        """Add `delta` to a counter (never below 0); the supervisor's alone. ValueError if the
        name is not a counter."""
        position = _COUNTERS.index(name)
        offset = _HEADER.size - (len(_COUNTERS) - position) * 8
        (value,) = struct.unpack_from("<Q", self.buffer, offset)
        struct.pack_into("<Q", self.buffer, offset, max(value + delta, 0))

    def prepare(self, index: int) -> None:
        """Before forking a worker for this slot: `starting`, no pid yet, started now."""
        _SLOT.pack_into(self.buffer, self._offset(index), 0, STARTING, b"", 0, 0, 0, 0,
                        time.time(), 0)

    def clear(self, index: int) -> None:
        """After reaping the slot's worker: empty."""
        _SLOT.pack_into(self.buffer, self._offset(index), 0, EMPTY, b"", 0, 0, 0, 0, 0.0, 0)

    def slot(self, index: int) -> Slot:
        """Slot `index` (0 <= index < capacity, else IndexError or struct.error) as read now."""
        pid, state, rid, deadline, served, rss, uss, started, announced = _SLOT.unpack_from(
            self.buffer, self._offset(index))
        return Slot(index, pid, SlotState(state), rid.rstrip(b"\0").decode("ascii", "replace"),
                    deadline, served, rss, uss, started, announced)

    def holder(self, index: int) -> tuple[int, bool, bytes]:
        """A slot's pid, whether it is busy, and its request id (NUL-padded): a cheap read for
        the hot path, where `slot` would decode every field."""
        pid, state, request_id = _HOLDER.unpack_from(self.buffer, self._offset(index))
        return pid, state == BUSY, request_id

    def slots(self) -> list[Slot]:
        """Every slot that is not empty."""
        return [s for s in map(self.slot, range(self.capacity)) if s.state is not SlotState.EMPTY]

    def status(self) -> dict[str, Any]:
        """Everything a person or a tool watching a run wants, as plain data."""
        header = _HEADER.unpack_from(self.buffer, 0)
        return {"supervisor_pid": header[3], "started": header[4], **self.counters(),
                "slots": [{**asdict(s), "state": s.state.label} for s in self.slots()]}


class WorkerSlot:
    """A worker's own slot: cheap writes on the hot path, one `pack_into` each. Made in the
    worker, right after its fork; `claim` is its first write."""

    def __init__(self, board: Scoreboard, index: int) -> None:
        self.buffer: mmap.mmap | bytearray = board.buffer
        self.base = board._offset(index)
        self.served = 0

    def claim(self, pid: int) -> None:
        """The worker's first write: its pid (the supervisor left it 0 and the state starting)."""
        struct.pack_into("<i", self.buffer, self.base + _PID_AT, pid)

    def detach(self) -> None:
        """A process the handler forked from the worker must never write the worker's slot: from
        here on this object writes to private memory."""
        self.buffer = bytearray(len(self.buffer))

    def _state(self, state: int) -> None:
        self.buffer[self.base + _STATE_AT] = state

    def idle(self) -> None:
        """Polling /next."""
        self._state(IDLE)

    def exiting(self, announced: Exit) -> None:
        """Announce the exit status this worker is about to leave with, then the state."""
        self.buffer[self.base + _ANNOUNCED_AT] = int(announced)
        self._state(EXITING)

    def busy(self, request_id: str, deadline_ms: int) -> None:
        """Holding an invocation: its id (ASCII, cut to 64 characters) and deadline (epoch ms)."""
        struct.pack_into("<64sq", self.buffer, self.base + _REQUEST_AT,
                         request_id.encode("ascii", "replace"), deadline_ms)
        self._state(BUSY)

    def done(self) -> None:
        """The invocation is answered: one more served, idle again."""
        self.served += 1
        struct.pack_into("<Q", self.buffer, self.base + _SERVED_AT, self.served)
        self._state(IDLE)

    def memory(self, rss_kb: int, uss_kb: int) -> None:
        """The last memory check, kB."""
        struct.pack_into("<QQ", self.buffer, self.base + _MEMORY_AT, rss_kb, uss_kb)
