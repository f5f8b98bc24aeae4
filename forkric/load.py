"""`forkric load`: Locust with forkric's users (forkric/soak/locustfile.py, shipped in the
package) against a running Invoke API, from any folder.

    forkric local app.handler --workers 4 &
    forkric load --event @event.json                         # the web UI on 127.0.0.1:8089
    forkric load --headless --users 16 --duration 60 --event @a.json:3 --event @b.json:1
    forkric load --headless -- --csv out/run --html out/run.html   # Locust's own options

It first waits for forkric local to be ready (`GET /status`, `--wait-ready`; a server without
/status, such as the AWS RIE, counts as ready), then becomes Locust (exec): Locust's output, its
Ctrl-C and its exit status (1 when any call failed) are the command's. `--event @-` reads the
event from standard input, as `forkric invoke --payload @-` does. A bad --event is one line and
exit status 2, before anything starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys

from forkric.config import Config
from forkric.invoke import NotReady, payload, wait_ready

EXIT_USAGE = 2


def locustfile() -> str:
    """The path of the locustfile inside the installed package."""
    spec = importlib.util.find_spec("forkric.soak.locustfile")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("forkric/soak/locustfile.py is not installed")
    return spec.origin


def locust_argv(args: argparse.Namespace, cfg: Config, passed: list[str]) -> list[str]:
    """`python -m locust ...` for these settings; `passed` (after --) goes last, so it wins."""
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    argv = [sys.executable, "-m", "locust", "-f", locustfile(),
            "--host", f"http://{host}:{cfg.port}", "--function-name", cfg.function_name,
            "--event", cfg.event, "--users", str(cfg.users), "--spawn-rate", str(cfg.users)]
    if cfg.headless:
        argv += ["--headless", "--run-time", f"{cfg.duration_s:g}s"]
    elif args.duration_s is not None or cfg.environ.get("FORKRIC_SOAK_DURATION"):
        argv += ["--run-time", f"{cfg.duration_s:g}s"]
    if not cfg.headless and not any(a.startswith("--web-host") for a in passed):
        argv += ["--web-host", "127.0.0.1"]  # loopback only, as forkric local
    return argv + passed


def main(args: argparse.Namespace, cfg: Config, passed: list[str]) -> int:
    from forkric.soak.locustfile import parse_events  # imports Locust: only here, then exec

    try:
        if cfg.event == "@-":  # standard input, read here: Locust is handed it inline
            cfg = dataclasses.replace(cfg, event=payload(cfg.event).decode("utf-8"))
        parse_events(cfg.event)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        print(f"forkric load: bad {cfg.named('event')}: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return EXIT_USAGE
    argv = locust_argv(args, cfg, passed)
    if cfg.wait_ready_s:
        try:
            wait_ready(cfg.host, cfg.port, cfg.wait_ready_s, sys.stderr, cfg.named("wait_ready_s"))
        except NotReady as exc:
            print(f"forkric load: {exc}", file=sys.stderr)
            return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # not reached
