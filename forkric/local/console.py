"""What `forkric local` prints: the runtime's lines, with repeated errors summed up.

A failing handler under load logs an error record (`[ERROR] Type: message` and its traceback,
or the same as one JSON object) per invocation: tens of thousands of lines a second. The
console shows the first record of each error type in full, then, every `window_s` seconds, one
line per type with how many more there were. Only the console is spared: each invocation's own
log (`X-Amz-Log-Type: Tail`) keeps its record. An init error is printed by the service in one
line, once, however many invocations initialise the runtime again and fail the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

ERROR_HEAD = "[ERROR] "  # an unhandled error's record; a logging record has a tab after ]
WINDOW_S = 5.0


def error_type(text: str) -> str | None:
    """The error type of an unhandled error record (text or JSON), None for any other line."""
    if text.startswith(ERROR_HEAD):
        head = text[len(ERROR_HEAD):].split("\n", 1)[0]
        kind, colon, _ = head.partition(":")
        return kind.strip() if colon and " " not in kind.strip() else head.strip()
    if text.startswith("{") and '"stackTrace"' in text and '"errorType"' in text:
        try:
            found = json.loads(text)
        except ValueError:
            return None
        if isinstance(found, dict) and found.get("level") == "ERROR":
            return str(found.get("errorType") or "")
    return None


def _import_machinery(entry: object) -> bool:
    """A stack entry of Python's import system, above the user's module in an init error."""
    text = str(entry)
    return "<frozen importlib." in text or f"{os.sep}importlib{os.sep}__init__.py" in text


class Console:
    def __init__(self, write: Callable[[str], None], window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.window_s = window_s
        self.clock = clock
        self.shown: set[str] = set()
        self.held: Counter[str] = Counter()  # error records not shown since the last summary
        self.last_summary = clock()
        self.init_error_shown: tuple[str, str] | None = None
        self.init_error_repeats = 0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def to(cls, stream: TextIO) -> Console:
        def write(text: str) -> None:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed console must not stop the service

        return cls(write)

    def line(self, text: str) -> None:
        """One line (or one multi-line record) of the runtime's output."""
        kind = error_type(text)
        if kind is None or kind not in self.shown:
            if kind is not None:
                self.shown.add(kind)
            self.write(text)
            return
        now = self.clock()
        if not self.held and not self.init_error_repeats and \
                now - self.last_summary >= self.window_s:
            self.last_summary = now  # a new window starts with the first record held back
        self.held[kind] += 1
        if now - self.last_summary >= self.window_s:
            self.summarise()

    def summarise(self) -> None:
        """The counts of the error records held back since the last summary."""
        self.last_summary = self.clock()
        window = f"{self.window_s:g} s"
        for kind, count in sorted(self.held.items()):
            self.write(f"forkric local: {count} more {kind} in the last {window} (shown once in "
                       f"full; each invocation's Tail log has its own)")
        self.held.clear()
        if self.init_error_repeats:
            self.write(f"forkric local: the same init error {self.init_error_repeats} more "
                       f"time(s) in the last {window}")
            self.init_error_repeats = 0

    def init_error(self, body: bytes) -> None:
        """The runtime reported an init error: one line (and the user's frames, if any) the
        first time, then only counted while it stays the same."""
        try:
            found = json.loads(body)
        except ValueError:
            found = {}
        if not isinstance(found, dict):
            found = {}
        kind = str(found.get("errorType") or "Runtime.Unknown")
        message = str(found.get("errorMessage") or "")
        if (kind, message) == self.init_error_shown:
            self.init_error_repeats += 1
            return
        self.init_error_shown = (kind, message)
        self.write(f"forkric local: init error: {kind}: {message}".rstrip(": "))
        trace = [entry for entry in found.get("stackTrace") or [] if not _import_machinery(entry)]
        if any(trace):
            self.write("Traceback (most recent call last):\n" + "".join(
                str(entry) if str(entry).endswith("\n") else f"{entry}\n" for entry in trace
            ).rstrip("\n"))

    def forget(self) -> None:
        """After a reload: the new code's errors are shown in full again."""
        self.summarise()
        self.shown.clear()
        self.init_error_shown = None

    def tick(self) -> float:
        """The timer's turn: the counts of a window that has run its length (a shorter one
        would be called "the last 5 s" too); returns the seconds until the next turn."""
        left = self.window_s - (self.clock() - self.last_summary)
        if left > 0:
            return left
        if self.held or self.init_error_repeats:
            self.summarise()
        return self.window_s

    def start(self) -> None:
        """Summarise on a timer too, so that counts show when the errors stop."""
        loop = asyncio.get_running_loop()

        def turn() -> None:
            self._timer = loop.call_later(self.tick(), turn)

        self._timer = loop.call_later(self.window_s, turn)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.held or self.init_error_repeats:
            self.summarise()
