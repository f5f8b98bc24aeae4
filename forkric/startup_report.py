"""The start-up report: after the handler's import and before the first fork, one log line per
thing the import left that forkric cannot make safe by itself (a thread, a connection, a module
half-imported by another thread), with what forkric did and what the user can do; then one line
for the import mode chosen. Nothing is logged for an import that left nothing of the kind."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from forkric import hooks

if TYPE_CHECKING:
    from forkric.prefork import Inheritance

log = logging.getLogger("forkric")


def lines(found: Inheritance, import_mode: str) -> list[str]:
    """The report's lines, without the logger's prefix."""
    out = [f"forkric: fork safety: {finding.what}: {finding.done}; {finding.advice}"
           for finding in found.findings]
    repaired = []
    if found.executors:
        repaired.append(f"{len(found.executors)} thread pool(s) get their own threads")
    if found.listeners:
        repaired.append(f"{len(found.listeners)} log listener(s) restarted")
    if found.generators:
        repaired.append(f"{len(found.generators)} numpy generator(s) reseeded")
    if found.give_back_openmp and found.openmp:
        repaired.append("OpenMP held to 1 thread during the import, given back to each worker")
    shut_down = [what for what in found.shut_down
                 if not any(what == f.what for f in found.findings)]
    if shut_down:
        repaired.append(f"{len(shut_down)} pooled client connection(s) (HTTP, redis) shut "
                        "down: they reconnect")
    if repaired and found.mode != "per-worker":
        out.append("forkric: fork safety: repaired in each worker: " + "; ".join(repaired))
    if found.mode == "per-worker" and import_mode == "auto" and hooks.registered():
        # forkric cannot tell what a hook replaces: the user who wrote one is told how to keep
        # the shared import instead of losing it silently.
        out.append("forkric: fork safety: import mode auto: each worker imports the handler "
                   "itself although @post_fork hooks are registered; if they replace what is "
                   "named above, FORKRIC_IMPORT_MODE=once keeps the shared import")
    elif found.mode == "per-worker" and import_mode == "auto":
        out.append("forkric: fork safety: import mode auto: each worker imports the handler "
                   "itself (memory of the handler's own objects is not shared; "
                   "FORKRIC_IMPORT_MODE=once keeps the shared import and the risks above)")
    elif found.mode == "per-worker":
        out.append("forkric: fork safety: each worker imports the handler itself "
                   "(FORKRIC_IMPORT_MODE=per-worker)")
    return out


def log_report(found: Inheritance, import_mode: str) -> None:
    """Risks at WARNING; what was repaired, at INFO (the supervisor's lines show at INFO)."""
    for line in lines(found, import_mode):
        level = logging.INFO if "repaired in each worker" in line else logging.WARNING
        log.log(level, "%s", line)
