"""The soak's acceptance grid: `forkric soak` over leak rates x memory limits x durations, each
cell's verdict checked against the truth, one table printed (Markdown, for the README).

    python -m loadtest.soak_grid                       # the whole grid: 40 cells, about 25 min
    python -m loadtest.soak_grid --rates 0,400 --limits none,80 --durations 15

A cell is right when a leaking handler is never "no leak", a clean one never "leak", and a
"leak" is within 25% of the true rate. "Inconclusive" is allowed (the table counts them): it is
the honest answer where a run cannot measure, never a pass for a leak. Rate 0 is the clean
handler (a scratch buffer a call, let go); others the leaky one with LEAK_KB. Each cell is
bounded: its duration, plus the soak's start and stop, killed past a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LEAKY = "loadtest.handlers.leaky.handler"
CLEAN = "loadtest.handlers.clean.handler"
# What the leaky handler keeps a call beyond LEAK_KB: the bytes object's header (33 bytes) and
# the list's pointer to it (8).
OVERHEAD_KB = (33 + 8) / 1024
TOLERANCE = 0.25
CELL_EXTRA_S = 120.0  # start-up, the load's start, the report, the stop


@dataclass
class Cell:
    rate_kb: float
    limit_mb: float  # 0: none given (the soak's safety limit applies)
    duration_s: float
    verdict: str = ""
    exit_status: int | None = None
    measured_kb: float | None = None
    error_pct: float | None = None
    recycles: int = 0
    lifetimes: int = 0
    invocations: int = 0
    resolution_kb: float | None = None
    wall_s: float = 0.0
    right: bool = False
    note: str = ""

    @property
    def true_kb(self) -> float:
        return self.rate_kb + OVERHEAD_KB if self.rate_kb else 0.0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.soak_grid",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0,16,50,100,400", help="KB kept per call")
    parser.add_argument("--limits", default="none,80,100,200", help="MB, or none")
    parser.add_argument("--durations", default="15,30", help="seconds of load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--json", help="also write every cell's numbers to this file")
    return parser.parse_args(argv)


def numbers(text: str) -> list[float]:
    return [0.0 if part.strip() == "none" else float(part) for part in text.split(",")]


def run_cell(cell: Cell, workers: int, users: int, out: Path) -> Cell:
    handler = LEAKY if cell.rate_kb else CLEAN
    argv = [sys.executable, "-m", "forkric", "soak", handler, "--duration",
            f"{cell.duration_s:g}", "--users", str(users), "--workers", str(workers),
            "--out", str(out)]
    if cell.limit_mb:
        argv += ["--max-worker-memory", f"{cell.limit_mb:g}"]
    env = {**os.environ, "LEAK_KB": f"{cell.rate_kb:g}"}
    started = time.monotonic()
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=cell.duration_s + CELL_EXTRA_S)
    except subprocess.TimeoutExpired:
        cell.note = "timed out"
        return cell
    cell.wall_s = time.monotonic() - started
    cell.exit_status = done.returncode
    try:
        report: dict[str, Any] = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        cell.note = (done.stderr.strip().splitlines() or ["no report"])[-1][:80]
        return cell
    found = report["leak"]
    cell.verdict = report["verdict"]
    cell.measured_kb = found["kb_per_invocation"]
    cell.resolution_kb = found["resolution_kb_per_invocation"]
    cell.recycles, cell.lifetimes = report["recycles"], found["lifetimes"]
    cell.invocations = report["invocations"]
    if cell.true_kb and cell.measured_kb is not None:
        cell.error_pct = 100 * (cell.measured_kb - cell.true_kb) / cell.true_kb
    cell.right = judge(cell)
    if report["failures"]:
        cell.note = f"{report['failures']} failed invocations"
    return cell


def judge(cell: Cell) -> bool:
    if cell.verdict == "inconclusive":
        return True
    if not cell.rate_kb:
        return cell.verdict == "no leak"
    if cell.verdict != "leak" or cell.error_pct is None:
        return False
    return abs(cell.error_pct) <= 100 * TOLERANCE


def table(cells: list[Cell]) -> str:
    lines = ["| leak KB/call | limit MB | duration s | verdict | measured KB/call | error | "
             "recycles | lifetimes | invocations | right |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        measured = "-" if c.measured_kb is None else f"{c.measured_kb:.1f}"
        error = "-" if c.error_pct is None or c.verdict != "leak" else f"{c.error_pct:+.1f}%"
        verdict = c.verdict or c.note or "?"
        if c.verdict == "no leak" and c.resolution_kb is not None:
            verdict += f" (>= {c.resolution_kb:.1f} KB)"
        limit = f"{c.limit_mb:g}" if c.limit_mb else "none"
        lines.append(f"| {c.rate_kb:g} | {limit} | {c.duration_s:g} | {verdict} | {measured} | "
                     f"{error} | {c.recycles} | {c.lifetimes} | {c.invocations} | "
                     f"{'yes' if c.right else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    cells = [Cell(rate, limit, duration) for duration in numbers(options.durations)
             for rate in numbers(options.rates) for limit in numbers(options.limits)]
    with tempfile.TemporaryDirectory(prefix="forkric-soak-grid-") as folder:
        for number, cell in enumerate(cells):
            run_cell(cell, options.workers, options.users, Path(folder) / f"cell-{number}")
            print(f"{number + 1}/{len(cells)}: {cell.rate_kb:g} KB, limit {cell.limit_mb:g}, "
                  f"{cell.duration_s:g} s: {cell.verdict or cell.note} "
                  f"({cell.measured_kb} KB, exit {cell.exit_status}, {cell.wall_s:.0f} s)",
                  file=sys.stderr, flush=True)
    print(table(cells))
    wrong = [c for c in cells if not c.right]
    inconclusive = sum(1 for c in cells if c.verdict == "inconclusive")
    print(f"\n{len(cells) - len(wrong)} of {len(cells)} cells right, {inconclusive} "
          f"inconclusive; workers {options.workers}, users {options.users}")
    if options.json:
        Path(options.json).write_text(json.dumps([asdict(c) for c in cells], indent=2) + "\n")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
