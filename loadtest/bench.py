"""`make bench`: every benchmark of the project, one table of forkric against its peers, each ratio
measured side by side in the same run.

    python -m loadtest.bench [--quick] [--only runtime,supervisor,local] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

Rows = list[dict[str, Any]]


def runtime(quick: bool) -> Rows:
    from loadtest import bench_runtime

    return bench_runtime.run(quick)


def supervisor(quick: bool) -> Rows:
    from loadtest import bench_supervisor

    return bench_supervisor.run(quick)


def local(quick: bool) -> Rows:
    """bench_local reports per service; here: one row per compared figure."""
    from loadtest import bench_local

    found = {row["service"]: row for row in bench_local.run(quick)}
    ours, theirs = found["forkric local"], found.get("RIE (LMI)", {})
    if "skipped" in theirs:
        theirs = {}
    ratio = found.get("ratio", {}).get("accepted_per_s")
    clients = f"{ours['clients']} vs {theirs.get('clients', '-')} clients"
    return [
        {"benchmark": "local service", "peer_name": "AWS RIE (managed instances)",
         "metric": f"accepted invocations/s, {ours['workers']} workers, {clients}",
         "forkric": ours["accepted_per_s"], "peer": theirs.get("accepted_per_s"),
         "ratio": ratio, "goal": f">= {bench_local.GOAL}x"},
        {"benchmark": "local service", "peer_name": "AWS RIE (managed instances)",
         "metric": "rejected invocations", "forkric": ours["rejected"],
         "peer": theirs.get("rejected"), "ratio": None, "goal": "0 (forkric)"},
        {"benchmark": "local service", "peer_name": "AWS RIE (managed instances)",
         "metric": "p99 latency (ms)", "forkric": ours["p99_ms"], "peer": theirs.get("p99_ms"),
         "ratio": None, "goal": "-"},
        *({"benchmark": "local service", "peer_name": "-",
           "metric": f"service CPU (s) for one {row['line_mb']} MB log line",
           "forkric": row["service_cpu_s"], "peer": None,
           "ratio": row.get("cpu_ratio_to_5_mb"),
           "goal": f"< {row['goal_s']:g} s" if "goal_s" in row else "-"}
          for row in bench_local.log_line_rows()),
    ]


def streaming(quick: bool) -> Rows:
    from loadtest import bench_streaming

    return bench_streaming.rows(quick)


BENCHMARKS: dict[str, Callable[[bool], Rows]] = {
    "runtime": runtime, "supervisor": supervisor, "local": local, "streaming": streaming}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(rows: Rows) -> str:
    """A Markdown table, as the README carries it."""
    head = ["benchmark", "metric", "forkric", "peer", "ratio", "goal", "peer_name"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in head) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows: Rows = []
    for name in args.only.split(","):
        print(f"running the {name} benchmark...", file=sys.stderr, flush=True)
        rows += BENCHMARKS[name](args.quick)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
