"""memory.png: each worker's private memory (USS) over time, one line per worker slot, its
recycles and crashes marked, the memory limit in force; beside it, the workers' total PSS and
USS; above both, the verdict with its rate and the time a worker takes to reach the limit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from forkric.soak.report import Marked
from forkric.soak.sampler import Snapshot

VERDICT_COLOURS = {"LEAK": "tab:red", "NO LEAK": "tab:green", "INCONCLUSIVE": "tab:orange"}
HEADLINE_WIDTH = 150  # characters a line, wrapped beyond
MARKERS = {"recycle": ("v", "recycle"), "crash": ("X", "crash"), "kill": ("X", "killed"),
           "exit": ("s", "exit")}


def draw(path: Path, marked: list[Marked], snapshots: list[Snapshot], title: str,
         limit_mb: float = 0.0, headline: str = "") -> None:
    """Write the chart; `headline` is the verdict's line, drawn in its colour under the title."""
    figure, (workers, total) = plt.subplots(1, 2, figsize=(13, 5.6), width_ratios=(3, 2))
    try:
        _workers(workers, marked, limit_mb)
        _total(total, snapshots)
        figure.suptitle(title, y=0.99)
        kind = headline.split(":", 1)[0]
        figure.text(0.5, 0.93, textwrap.fill(headline, HEADLINE_WIDTH), ha="center", va="top",
                    fontsize="small", color=VERDICT_COLOURS.get(kind, "black"))
        figure.tight_layout(rect=(0, 0, 1, 0.88))
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def _workers(axes: Axes, marked: list[Marked], limit_mb: float) -> None:
    slots = sorted({item.sample.worker for item in marked})
    for slot in slots:
        mine = [item for item in marked if item.sample.worker == slot]
        # One line per slot, broken where a new process takes it over.
        times: list[float] = []
        uss: list[float] = []
        previous_pid = None
        for item in mine:
            if previous_pid is not None and item.sample.pid != previous_pid:
                times.append(float("nan"))
                uss.append(float("nan"))
            times.append(item.sample.time_s)
            uss.append(item.sample.uss_kb / 1024)
            previous_pid = item.sample.pid
        (line,) = axes.plot(times, uss, label=f"worker {slot}", linewidth=1.2)
        for event, (marker, _) in MARKERS.items():
            ends = [item for item in mine if item.event == event]
            axes.scatter([i.sample.time_s for i in ends], [i.sample.uss_kb / 1024 for i in ends],
                         marker=marker, s=50, color=line.get_color(), zorder=3)
    for event, (marker, label) in MARKERS.items():
        if any(item.event == event for item in marked):
            axes.scatter([], [], marker=marker, color="black", label=label)
    if limit_mb:
        axes.axhline(limit_mb, color="red", linestyle="--", linewidth=1,
                     label=f"memory limit {limit_mb:g} MB")
    axes.set_xlabel("seconds")
    axes.set_ylabel("private memory (USS), MB")
    axes.set_title("each worker")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best", ncols=2, framealpha=0.8)


def _total(axes: Axes, snapshots: list[Snapshot]) -> None:
    times = [snap.time_s for snap in snapshots]
    axes.plot(times, [snap.total_pss_kb / 1024 for snap in snapshots], label="total PSS",
              color="tab:purple")
    axes.plot(times, [sum(s.uss_kb for s in snap.samples) / 1024 for snap in snapshots],
              label="total USS", color="tab:gray", linestyle="--")
    axes.set_xlabel("seconds")
    axes.set_ylabel("MB")
    axes.set_title("all workers")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left")
