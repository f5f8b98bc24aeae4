"""The fork-hazard corpus, whole: every case under forkric (default import mode, and `once` for
the cases that need the hook or the mode) and under awslambdaric, by the real RIE in
managed-instances mode, 4 workers/processes, 4 concurrent clients. Prints the README's table.

    python -m loadtest.fork_corpus [CASE ...]

Needs root (LMI mode), Debian's postgresql and redis-server (.ci/run installs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from tests.interop.test_fork_corpus import NAMED_BY, _missing
from tests.support import corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--python", default="", metavar="X.Y",
                        help="run the runtimes on pyenv's CPython X.Y (default: Debian's)")
    args = parser.parse_args(argv)
    cases = [corpus.BY_NAME[name] for name in args.cases] or list(corpus.CASES)
    started = time.monotonic()
    rows = []
    failures = 0
    with corpus.servers_for([c for c in cases if not _missing(c, args.python)]) as env:
        for case in cases:
            reason = _missing(case, args.python)
            if reason:
                rows.append(f"| {case.name} | skipped: {reason} | | |")
                continue
            ours = corpus.run_case(case, "forkric", env, version=args.python)
            peer = corpus.run_case(case, "awslambdaric", env, version=args.python)
            once = ""
            if case.name in NAMED_BY:
                trial = corpus.run_case(dataclasses.replace(case, invocations=8), "forkric",
                                        env, {"FORKRIC_IMPORT_MODE": "once"}, args.python)
                named = any(NAMED_BY[case.name] in line for line in trial.log.splitlines()
                            if "fork safety" in line)
                once = f"{'named' if named else 'NOT named'}; {trial.brief()}"
            failures += not (ours.passed and peer.passed)
            rows.append(f"| {case.name} | {ours.summary()} | {peer.summary()} | {once} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"\nfork-hazard corpus, Python {corpus.runtime_version(args.python)}, "
          f"{corpus.WORKERS} workers, {corpus.CLIENTS} clients, "
          f"{time.monotonic() - started:.0f} s\n")
    print("| case | forkric (default: auto) | awslambdaric 4.2.2 | forkric, "
          "FORKRIC_IMPORT_MODE=once: report; answers |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
