"""The shared scoreboard: one slot per worker in a shared mmap made before the first fork.

Each worker writes only its own slot; the supervisor reads them all to know which invocation a
dead or stuck worker held. Backed by a file (`--status-file`), other processes can read it too:
`forkric local` serves it as its status endpoint.

A worker writes the request id and deadline before it flips its state to busy, and the state
back to idle when done; a reader that sees `busy` therefore sees that invocation's fields.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import asdict, dataclass
from typing import Any

MAGIC = b"FKRC"
VERSION = 1
CAPACITY = 256

# magic, version, capacity, supervisor pid, started, recycles, crashes, kills, spawns, and the
# number of workers the supervisor wants
_HEADER = struct.Struct("<4sHHid5Q")
# pid, state, request id, deadline (epoch ms), invocations, rss kB, uss kB, started
_SLOT = struct.Struct("<iB64sqQQQd")
_HOLDER = struct.Struct("<iB64s")  # the head of a slot: pid, state, request id

EMPTY, STARTING, IDLE, BUSY, EXITING = range(5)
STATE_NAMES = ("empty", "starting", "idle", "busy", "exiting")

_COUNTERS = ("recycles", "crashes", "kills", "spawns", "workers")


@dataclass
class Slot:
    index: int
    pid: int
    state: str
    request_id: str
    deadline_ms: int
    invocations: int
    rss_kb: int
    uss_kb: int
    started: float


class Scoreboard:
    def __init__(self, buffer: mmap.mmap, capacity: int) -> None:
        self.buffer = buffer
        self.capacity = capacity

    @classmethod
    def create(cls, path: str = "", capacity: int = CAPACITY) -> Scoreboard:
        """A new scoreboard, anonymous or backed by `path`; made before any fork."""
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
        """Read another process's scoreboard from its file."""
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
        values = _HEADER.unpack_from(self.buffer, 0)[5:]
        return dict(zip(_COUNTERS, values, strict=True))

    def count(self, name: str, delta: int = 1) -> None:
        position = _COUNTERS.index(name)
        offset = _HEADER.size - (len(_COUNTERS) - position) * 8
        (value,) = struct.unpack_from("<Q", self.buffer, offset)
        struct.pack_into("<Q", self.buffer, offset, max(value + delta, 0))

    def assign(self, index: int, pid: int) -> None:
        _SLOT.pack_into(self.buffer, self._offset(index), pid, STARTING, b"", 0, 0, 0, 0,
                        time.time())

    def clear(self, index: int) -> None:
        _SLOT.pack_into(self.buffer, self._offset(index), 0, EMPTY, b"", 0, 0, 0, 0, 0.0)

    def slot(self, index: int) -> Slot:
        pid, state, rid, deadline, served, rss, uss, started = _SLOT.unpack_from(
            self.buffer, self._offset(index))
        return Slot(index, pid, STATE_NAMES[state], rid.rstrip(b"\0").decode("ascii", "replace"),
                    deadline, served, rss, uss, started)

    def holder(self, index: int) -> tuple[int, bool, bytes]:
        """A slot's pid, whether it is busy, and its request id (NUL-padded): a cheap read for
        the hot path, where `slot` would decode every field."""
        pid, state, request_id = _HOLDER.unpack_from(self.buffer, self._offset(index))
        return pid, state == BUSY, request_id

    def slots(self) -> list[Slot]:
        return [s for s in map(self.slot, range(self.capacity)) if s.state != "empty"]

    def status(self) -> dict[str, Any]:
        """Everything a person or a tool watching a run wants, as plain data."""
        header = _HEADER.unpack_from(self.buffer, 0)
        return {"supervisor_pid": header[3], "started": header[4], **self.counters(),
                "slots": [asdict(s) for s in self.slots()]}


class WorkerSlot:
    """A worker's own slot: cheap writes on the hot path, one `pack_into` each."""

    _STATE_AT = 4
    _REQUEST_AT = 5
    _SERVED_AT = _SLOT.size - 8 * 4
    _MEMORY_AT = _SERVED_AT + 8

    def __init__(self, board: Scoreboard, index: int) -> None:
        self.buffer = board.buffer
        self.base = board._offset(index)
        self.served = 0

    def _state(self, state: int) -> None:
        self.buffer[self.base + self._STATE_AT] = state

    def idle(self) -> None:
        self._state(IDLE)

    def exiting(self) -> None:
        self._state(EXITING)

    def busy(self, request_id: str, deadline_ms: int) -> None:
        struct.pack_into("<64sq", self.buffer, self.base + self._REQUEST_AT,
                         request_id.encode("ascii", "replace"), deadline_ms)
        self._state(BUSY)

    def done(self) -> None:
        self.served += 1
        struct.pack_into("<Q", self.buffer, self.base + self._SERVED_AT, self.served)
        self._state(IDLE)

    def memory(self, rss_kb: int, uss_kb: int) -> None:
        struct.pack_into("<QQ", self.buffer, self.base + self._MEMORY_AT, rss_kb, uss_kb)
