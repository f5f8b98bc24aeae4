"""Command line: `forkric run|local|soak|invoke`, and `python -m forkric [options] [HANDLER]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from forkric import __version__, config, errors, handler, paths, prefork, snapstart
from forkric.logs import UNHANDLED_INIT_WARNING, Logs, log_init_records
from forkric.runtime_api import RuntimeAPI
from forkric.scoreboard import CAPACITY

log = logging.getLogger("forkric")
SUBCOMMANDS = ("run", "local", "soak", "invoke")


def _add_handler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("handler", nargs="?", metavar="HANDLER",
                        help="module.function, as in Lambda (default: $_HANDLER)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forkric", description="A pre-forked, multi-process runtime for AWS Lambda Python "
                                    "handlers: import once, fork N workers.")
    parser.add_argument("--version", action="version", version=f"forkric {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in (("run", "the runtime: what a Lambda image starts"),
                       ("local", "an embedded Lambda service on loopback"),
                       ("soak", "a bounded load with memory sampling and a leak report")):
        command = commands.add_parser(name, help=text)
        _add_handler(command)
        config.add_arguments(command, name)

    invoke = commands.add_parser("invoke", help="one call to an Invoke API, printed")
    invoke.add_argument("--port", type=int, default=9000)
    invoke.add_argument("--host", default="127.0.0.1")
    invoke.add_argument("--function", default="function")
    invoke.add_argument("--payload", default="{}", help="event JSON, or @file")
    invoke.add_argument("--log-type", choices=("None", "Tail"), default="None")
    invoke.add_argument("--invocation-type", choices=("RequestResponse", "Event", "DryRun"),
                        default="RequestResponse")
    return parser


def settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> config.Config:
    given = {s.name: getattr(args, s.name, None) for s in config.SETTINGS}
    return config.load(getattr(args, "handler", None), given, environ, args.command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        cfg = settings(args)
        if not cfg.runtime_api:
            parser.error("AWS_LAMBDA_RUNTIME_API is not set: it names the Runtime API to poll "
                         "(use `forkric local` for a local one)")
        return run(cfg)
    if args.command == "invoke":
        from forkric.local.invoke import main as invoke_main

        return invoke_main(args)
    try:
        if args.command == "local":
            from forkric.local import main as command_main
        else:
            from forkric.soak import main as command_main
    except ImportError as exc:  # the command's extra is not installed
        parser.error(f"`forkric {args.command}` needs its extra: "
                     f"pip install 'forkric[{args.command}]' ({exc})")
    return command_main(args, settings(args))


def run_main() -> None:
    """`python -m forkric`: the `run` command unless a subcommand is named."""
    argv = sys.argv[1:]
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help", "--version"):
        argv = ["run", *argv]
    sys.exit(main(argv))


def run(cfg: config.Config) -> int:
    """The runtime: path set-up, import the handler once, then hand over to the supervisor."""
    from forkric.supervisor import Supervisor

    # Everything forkric needs is imported before the task root goes on sys.path (a function's
    # own random.py or httptools must not stand in for them): the codecs and resolver modules
    # that a first connect would load lazily too.
    prefork.warm_up(cfg.runtime_api)
    paths.set_up()
    logs = Logs(os.environ)
    logs.install()
    if not logs.level:
        # The supervisor's own lines (starts, deaths, recycles) show even at the default WARNING.
        log.setLevel(logging.INFO)
    log_init_records(cfg.environ, min(cfg.workers, CAPACITY))
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    try:
        with prefork.importing(cfg.runtime_api):
            function = handler.load(cfg.handler)
        # SnapStart: hooks, snapshot, restore; then prepare sees what the hooks left, then forks.
        if snapstart.requested(cfg.environ):
            code = snapstart.snapshot_and_restore(cfg.runtime_api, logs)
            if code:
                return code
        inherited = prefork.prepare(cfg.handler, cfg.import_mode, cfg.post_fork, task_root)
    except Exception as exc:
        return report_init_error(cfg, logs, exc)
    return Supervisor(cfg, function, logs, reload=lambda: reload_handler(cfg.handler, task_root),
                      inherited=inherited).run()


def report_init_error(cfg: config.Config, logs: Logs, exc: Exception) -> int:
    """An init error is logged and reported once, by the supervisor; then the runtime exits 1."""
    error, _ = errors.from_exception(exc)
    logging.warning(UNHANDLED_INIT_WARNING)
    logs.error(error)
    try:
        RuntimeAPI(cfg.runtime_api, next_retries=0).post_init_error(error)
    except Exception as post_failure:
        log.error("forkric: could not report the init error: %s", post_failure)
    return 1


def reload_handler(name: str, task_root: str) -> handler.Handler:
    """SIGHUP: forget the user's modules (those under the task root), import the handler again."""
    handler.forget_modules(task_root)
    with prefork.importing():
        return handler.load(name)
