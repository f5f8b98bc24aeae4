"""forkric and awslambdaric side by side, each under its own real RIE in classic mode.

A `Pair` runs `python -m forkric HANDLER` and `python -m awslambdaric HANDLER` with the same
interpreter, task root and environment, sends both the same invocations, and hands back both
answers and both runtimes' log output (what each RIE captured from its runtime's stdout/stderr),
normalised so that only real differences remain: request ids, timestamps and the RIE's own lines
are taken out.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import rie

PYTHON = sys.executable  # the venv's interpreter: it has forkric (editable) and awslambdaric
CORPUS = rie.REPO / "tests" / "handlers"
RUNTIMES = ("forkric", "awslambdaric")

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z")
# The RIE's own lines: "27 Nov 2026 16:21:44,316 [INFO] (rapid) ..." and START/END/REPORT.
RIE_LINE = re.compile(r"^(?:\d\d \w{3} \d{4} \d\d:\d\d:\d\d,\d{3} \[\w+\] \(rapid\)|"
                      r"(?:START|END|REPORT) RequestId: )")
RIE_INLINE = re.compile(r"(?<=[^\n])(?=\d\d \w{3} \d{4} \d\d:\d\d:\d\d,\d{3} \[\w+\] \(rapid\))")
# The RIE's last line about an invocation: END when the runtime answered, else the reset after
# the runtime process died (init error, exit).
INVOKE_OVER = re.compile(r"^(?:END RequestId: |.*\(rapid\) Reset initiated)", re.MULTILINE)
LOG_SETTLE_S = 5.0
# forkric's supervisor announces its start (and, on SIGTERM, its stop) at INFO even at the default
# log level (cli.py sets the "forkric" logger to INFO); awslambdaric prints nothing. A known,
# reported difference: taken out of the log comparisons here and pinned by its own test
# (test_differential.test_forkric_start_line).
FORKRIC_START_LINE = re.compile(r"forkric: (?:supervisor \d+ starting \d+ worker|"
                                r"stopping: idle workers|supervisor \d+ stopped)")


def task_root(dest: Path) -> Path:
    """A fresh task root holding the corpus; `x.py.txt` files become `x.py`."""
    shutil.copytree(CORPUS, dest, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    for text in dest.rglob("*.py.txt"):
        text.rename(text.with_suffix(""))
    return dest


def normalise_body(body: bytes) -> bytes:
    return UUID.sub(b"<request-id>", body)


def runtime_lines(log: str) -> list[str]:
    """The runtime's own output in an RIE log, one entry per line (a CR inside a line stays: it
    is how the error log line keeps its parts together), request ids and timestamps normalised."""
    lines = []
    # Output without a final newline runs into the RIE's next line: cut it there.
    log = RIE_INLINE.sub("\n", log)
    for line in log.split("\n"):
        if not line or RIE_LINE.match(line):
            continue
        line = UUID.sub(b"<request-id>", line.encode()).decode()
        lines.append(ISO_TIME.sub("<time>", line))
    return lines


def without_start_line(lines: list[str]) -> list[str]:
    return [line for line in lines if not FORKRIC_START_LINE.search(line)]


def without_start_line_frames(frames: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [frame for frame in frames if not FORKRIC_START_LINE.search(frame[1])]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    log: list[str]

    @property
    def comparable(self) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in self.headers.items() if k not in ("date",)}
        return self.status, headers, normalise_body(self.body)


@dataclass
class Exchange:
    forkric: Answer
    peer: Answer

    def describe(self) -> str:
        return "".join(f"\n{name}: {answer.status} {answer.body[:2000]!r}\n  log {answer.log}"
                       for name, answer in (("forkric", self.forkric), ("awslambdaric", self.peer)))


class Side:
    def __init__(self, emulator: rie.Emulator) -> None:
        self.emulator = emulator

    def _log_size(self) -> int:
        return self.emulator.log_path.stat().st_size

    def invoke(self, payload: Any = None, **kwargs: Any) -> Answer:
        start = self._log_size()
        reply = self.emulator.invoke(payload, **kwargs)
        # The RIE writes END (or an error line) once the invocation is over; the runtime's own
        # output comes before it. Poll for it rather than sleep.
        deadline = time.monotonic() + LOG_SETTLE_S
        while True:
            with self.emulator.log_path.open("rb") as file:
                file.seek(start)
                chunk = file.read().decode("utf-8", "replace")
            if INVOKE_OVER.search(chunk) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return Answer(reply.status, reply.headers, reply.body, runtime_lines(chunk))


class Pair:
    """Both runtimes on the same handler, task root and environment."""

    def __init__(self, sides: dict[str, Side]) -> None:
        self.sides = sides
        self.start_lines: list[str] = []  # forkric's start announcements, taken out of the logs

    def invoke(self, payload: Any = None, **kwargs: Any) -> Exchange:
        ours = self.sides["forkric"].invoke(payload, **kwargs)
        self.start_lines.extend(line for line in ours.log if FORKRIC_START_LINE.search(line))
        ours.log = without_start_line(ours.log)
        return Exchange(ours, self.sides["awslambdaric"].invoke(payload, **kwargs))


def env_for(task_dir: Path, **extra: str) -> dict[str, str]:
    # LAMBDA_TASK_ROOT as the base image sets it: forkric defaults it to the working directory
    # and awslambdaric leaves it alone, so both get it from outside.
    return rie.base_env(LAMBDA_TASK_ROOT=str(task_dir), **extra)


@contextlib.contextmanager
def pair(handler: str, task_dir: Path, env: Mapping[str, str] | None = None,
         args: tuple[str, ...] = ()) -> Iterator[Pair]:
    """Two RIEs, one per runtime, in classic mode (each runtime starts on its first invoke)."""
    env = dict(env if env is not None else env_for(task_dir))
    tag = re.sub(r"[^A-Za-z0-9]+", "_", handler)
    with contextlib.ExitStack() as stack:
        sides = {}
        for name in RUNTIMES:
            command = [PYTHON, "-m", name, *(args if name == "forkric" else ()), handler]
            log_path = task_dir.parent / f"rie-{tag}-{name}-{rie.free_port()}.log"
            sides[name] = Side(stack.enter_context(rie.classic(command, task_dir, env, log_path)))
        yield Pair(sides)
