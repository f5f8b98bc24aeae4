"""Command line: `forkric run|local|soak|invoke|load`, and `python -m forkric [options] [HANDLER]`.

Exit status 2 for every usage error (a bad flag or value, no handler, a missing extra), with a
message in one line; each command's own failures are 1 (and `soak`'s verdicts, see there).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from forkric import __version__, config, errors, handler, paths, prefork, snapstart, streaming
from forkric.logs import UNHANDLED_INIT_WARNING, Logs, log_init_records
from forkric.runtime_api import RuntimeAPI
from forkric.scoreboard import CAPACITY

log = logging.getLogger("forkric")
SUBCOMMANDS = ("run", "local", "soak", "invoke", "load")
EXIT_USAGE = 2
# The modules each command needs beyond the base install, and the extra that brings them.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local": ("local", ("uvicorn",)),
    "soak": ("soak", ("uvicorn", "locust", "matplotlib")),
    "load": ("load", ("locust",)),
}

COMMANDS = {
    "run": ("the runtime: what a Lambda image starts (polls $AWS_LAMBDA_RUNTIME_API)", True),
    "local": ("an embedded Lambda service on loopback, running HANDLER", True),
    "soak": ("forkric local under a bounded Locust load, with memory sampling and a leak "
             "verdict (its exit statuses: forkric soak --help)", True),
    "invoke": ("one call to an Invoke API (forkric local, the RIE), printed; exit 1 for an "
               "error", False),
    "load": ("Locust with forkric's users against a running Invoke API; arguments after -- go "
             "to Locust", False),
}
# A command's own --help says more than its line in `forkric --help`, where it would be a wall.
DESCRIPTIONS = {
    "soak": "forkric local under a bounded Locust load, with memory sampling and a leak verdict; "
            "exit 0 no leak, 3 leak, 4 inconclusive, 5 invocations failed, 1 the soak could not "
            "run; stopped by Ctrl-C or SIGTERM: the partial report, marked as interrupted, and "
            "130 or 143 (128 + the signal) unless a leak (3) or failures (5) were already found",
}


class Parser(argparse.ArgumentParser):
    """argparse's errors in one line, named for the command, pointing at its --help (argparse
    prints the whole usage block first, and blames `forkric` for a command's unknown flag)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_handler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("handler", nargs="?", metavar="HANDLER",
                        help="module.function, as in Lambda (default: $_HANDLER)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="forkric", description="A pre-forked, multi-process runtime for AWS Lambda Python "
                                    "handlers: import once, fork N workers.")
    parser.add_argument("--version", action="version", version=f"forkric {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (text, takes_handler) in COMMANDS.items():
        command = commands.add_parser(name, help=text, description=DESCRIPTIONS.get(name, text))
        if takes_handler:
            _add_handler(command)
        config.add_arguments(command, name)
    return parser


def settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> config.Config:
    given = {s.name: getattr(args, s.name, None) for s in config.SETTINGS}
    return config.load(getattr(args, "handler", None), given, environ, args.command)


def missing_modules(command: str) -> list[str]:
    """The modules `command` needs that are not installed (looked up, not imported)."""
    _, modules = EXTRAS.get(command, ("", ()))
    return [name for name in modules if importlib.util.find_spec(name) is None]


def usage_error(command: str, message: str) -> int:
    print(f"forkric {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "--" in argv:  # `forkric load ... -- LOCUST ARGS`
        argv, passed = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command = f"forkric {args.command}"
    if unknown:
        return usage_error(args.command, f"unrecognized arguments: {' '.join(unknown)} (see "
                                         f"{command} --help)")
    if passed and args.command != "load":
        return usage_error(args.command, f"takes no arguments after -- (see {command} --help)")
    try:
        cfg = settings(args)
    except config.UsageError as exc:
        return usage_error(args.command, str(exc))
    if args.command in config.CLIENT and cfg.port == 0:  # "any free port" serves, never calls
        return usage_error(args.command, f"bad value for {cfg.named('port')}: a client calls "
                                         f"a port of 1 to 65535 (0 means any free port only "
                                         f"to forkric local)")
    if args.command in ("local", "soak") and not cfg.handler:
        return usage_error(args.command, "name a handler (module.function) or set _HANDLER")
    if args.command == "run":
        if not cfg.runtime_api:
            return usage_error("run", "AWS_LAMBDA_RUNTIME_API is not set: it names the Runtime "
                                      "API to poll (use `forkric local` for a local one)")
        return run(cfg)
    if args.command == "invoke":
        from forkric.invoke import main as invoke_main

        return invoke_main(cfg)
    missing = missing_modules(args.command)
    if missing:
        return missing_extra(args.command, ", ".join(missing))
    try:
        if args.command == "local":
            from forkric.local import main as local_main

            return local_main(args, cfg)
        if args.command == "load":
            from forkric.load import main as load_main

            return load_main(args, cfg, passed)
        from forkric.soak import main as soak_main
    except ImportError as exc:  # installed, but broken or shadowed
        return missing_extra(args.command, str(exc))
    return soak_main(args, cfg)


def missing_extra(command: str, what: str) -> int:
    extra = EXTRAS[command][0]
    return usage_error(command, f"needs {what}: pip install 'forkric[{extra}]' "
                                f"(from a clone: pip install '.[{extra}]')")


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
    streaming.enable_for_all(cfg.response_streaming)
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
    warn_if_not_callable(cfg.handler, function)
    return Supervisor(cfg, function, logs, reload=lambda: reload_handler(cfg.handler, task_root),
                      inherited=inherited).run()


def warn_if_not_callable(name: str, function: object) -> None:
    """awslambdaric takes any attribute as the handler and fails each invocation with a
    TypeError (`'dict' object is not callable`); forkric does the same, and says so at start."""
    if not callable(function):
        log.warning("forkric: the handler %s is not callable (it is of type %s): every "
                    "invocation will fail with TypeError, as under awslambdaric", name,
                    type(function).__name__)


def report_init_error(cfg: config.Config, logs: Logs, exc: Exception) -> int:
    """An init error is logged and reported once, by the supervisor; then the runtime exits 1.
    Under `forkric local` the service prints it (one line, once): the runtime only reports it."""
    error, _ = errors.from_exception(exc)
    if not cfg.environ.get(config.LOCAL_ENV):  # forkric local prints it, once, in one line
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
        reloaded = handler.load(name)
    warn_if_not_callable(name, reloaded)
    return reloaded
