"""`forkric local`: an embedded Lambda service on loopback, with the runtime as its child.

The Invoke API queues invocations (FIFO, up to --max-queue) and maps every outcome as Lambda
does; the Runtime API serves any number of long-polling workers. See service.py for the routes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from forkric.config import Config
from forkric.local import server
from forkric.local.console import Console
from forkric.local.invocations import Invocations
from forkric.local.logcapture import LogCapture
from forkric.local.runtime import Plan, Runtime
from forkric.local.service import Service
from forkric.scoreboard import CAPACITY

STOP_EXTRA_S = 5.0  # on top of the supervisor's shutdown grace

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    handler: str
    host: str
    port: int
    workers: int
    timeout_s: float
    max_queue: int
    config: Config


def options(args: argparse.Namespace, config: Config) -> Options:
    return Options(handler=config.handler, host=config.host, port=config.port,
                   workers=config.workers, timeout_s=config.timeout_s,
                   max_queue=config.max_queue, config=config)


def main(args: argparse.Namespace, config: Config) -> int:
    opts = options(args, config)
    if not opts.handler:
        print("forkric local: name a handler (module.function) or set _HANDLER", file=sys.stderr)
        return 2
    if opts.config.reload and importlib.util.find_spec("watchfiles") is None:
        print("forkric local: --reload needs watchfiles: pip install 'forkric[local]'",
              file=sys.stderr)
        return 2
    if opts.timeout_s <= 0 or opts.max_queue < 0:
        print("forkric local: --timeout must be positive and --max-queue not negative",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="forkric-local-") as workdir:
        return run_loop(serve(opts, workdir))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed (measured: about a third less CPU per
    invocation than asyncio's own loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def serve(opts: Options, workdir: str) -> int:
    invocations = Invocations(opts.timeout_s, opts.max_queue)
    runtime: Runtime | None = None
    console = Console.to(sys.stdout)
    capture = LogCapture(os.path.join(workdir, "logs.sock"),
                         lambda: runtime.board() if runtime else None, on_line=console.line)
    plan = Plan(opts.handler, opts.workers, opts.timeout_s, capture.path, opts.config)
    runtime = Runtime(plan, workdir, console.line, lambda code: service.runtime_ended(code))
    service = Service(invocations, runtime, capture, console, opts.host)
    capture.start()
    console.start()
    try:
        invoke_sock = server.bind(opts.host, opts.port)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        print(f"forkric local: cannot listen on {opts.host}:{opts.port}: {exc.strerror or exc}"
              f" (choose another with {opts.config.named('port')})", file=sys.stderr)
        capture.close()
        return 1
    runtime_sock = server.bind("127.0.0.1", 0)
    # A worker's connection idles while its handler runs: kept for longer than any invocation,
    # since only the connection an invocation was handed out on may answer it.
    # The file descriptors the service may spend on connections: its workers' first (each keeps
    # one, its supervisor opens one per report), callers' the rest.
    budget = server.connection_budget()
    for_runtime = min(budget // 2, 4 * opts.workers + 64)
    # A worker's connection idles while its handler runs: kept for longer than any invocation,
    # since only the connection an invocation was handed out on may answer it.
    runtime_server = server.serve(service.runtime_api, runtime_sock, for_runtime,
                                  keep_alive_s=opts.timeout_s + server.KEEP_ALIVE_S,
                                  on_reset=service.unread)
    invoke_server = server.serve(service.invoke_api, invoke_sock, budget - for_runtime)
    runtime_api = f"127.0.0.1:{runtime_server.port}"
    _announce(opts, invoke_server.port, runtime_api)
    runtime.start(runtime_api)
    watcher = None
    if opts.config.reload:
        from forkric.local import reload

        watcher = reload.watch(task_root(opts.config), lambda why: _reload(runtime, console, why))
    await _until_signalled(lambda: _reload(runtime, console, "SIGHUP"))
    if watcher is not None:
        await watcher.stop()
    print("forkric local: stopping", flush=True)
    await service.stop(opts.config.shutdown_grace_s + STOP_EXTRA_S)
    await invoke_server.stop()
    await runtime_server.stop()
    console.stop()  # the counts of what was held back, the workers' last lines included
    capture.close()
    print("forkric local: stopped", flush=True)
    return 0


def _announce(opts: Options, port: int, runtime_api: str) -> None:
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    print(f"forkric local: Invoke API on http://{host}:{port}"
          f"/2015-03-31/functions/function/invocations", flush=True)
    print(f"forkric local: status on http://{host}:{port}/status; Runtime API on "
          f"{runtime_api}", flush=True)
    capped = f" (the most the scoreboard holds: {opts.workers} asked for)" \
        if opts.workers > CAPACITY else ""
    print(f"forkric local: {min(opts.workers, CAPACITY)} worker(s) of {opts.handler}{capped}, "
          f"timeout {opts.timeout_s:g} s, up to {opts.max_queue} queued", flush=True)
    if opts.config.reload:
        print(f"forkric local: --reload: watching the Python files under "
              f"{task_root(opts.config)}", flush=True)


def task_root(config: Config) -> str:
    """Where the handler's code is: LAMBDA_TASK_ROOT, else the working directory (as the
    runtime's path set-up has it)."""
    return config.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()


def _reload(runtime: Runtime, console: Console, why: str) -> None:
    console.forget()
    runtime.reload(why)


async def _until_signalled(on_hangup: Callable[[], None]) -> None:
    """Until SIGINT or SIGTERM; SIGHUP reloads the handler, as it does for the supervisor."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.remove_signal_handler(sig)
