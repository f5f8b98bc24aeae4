"""`forkric local` as the soak's child: started with the soak's settings, its output kept in a
file, its `GET /status` read, and stopped with SIGTERM (SIGKILL past a grace)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkric.config import SETTINGS, Config

POLL_S = 0.05
STATUS_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    """`forkric local` did not start, or died."""


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def status(self, timeout: float = STATUS_TIMEOUT_S) -> dict[str, Any]:
        """The service's `GET /status` document."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", "/status")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise ServiceError(f"GET /status answered {response.status}")
            found = json.loads(body)
            return found if isinstance(found, dict) else {}
        finally:
            conn.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    def stop(self, grace_s: float) -> int:
        """SIGTERM, then SIGKILL to the whole group past the grace; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def local_command(args: argparse.Namespace, config: Config, port: int,
                  max_worker_memory_mb: float) -> tuple[list[str], dict[str, str]]:
    """`python -m forkric local HANDLER ...` and its environment: every runtime setting the soak
    was given on its command line travels as its environment variable, the rest is inherited;
    the workers' memory limit is the one the soak decided (the user's, or its safety limit)."""
    env = dict(os.environ)
    for setting in SETTINGS:
        given = getattr(args, setting.name, None)
        # The service's own settings go on its command line (the status file is run's only).
        if given is not None and "run" in setting.commands:
            env[setting.env[0]] = str(given)
    env["FORKRIC_MAX_WORKER_MEMORY_MB"] = f"{max_worker_memory_mb:g}"
    # Every user may have one invocation waiting: more queue than users is never needed.
    max_queue = config.max_queue if args.max_queue is not None else max(
        config.max_queue, config.users)
    argv = [sys.executable, "-m", "forkric", "local", config.handler, "--host", config.host,
            "--port", str(port), "--workers", str(config.workers), "--timeout",
            str(config.timeout_s), "--max-queue", str(max_queue)]
    return argv, env


def start(argv: list[str], env: dict[str, str], log_path: Path, host: str, port: int) -> Service:
    log_file = log_path.open("wb")
    try:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log_file.close()
    return Service(process, host, port, log_path)


def take_port(host: str, port: int, named: str = "--port") -> int:
    """The port to serve on: `port`, or any free one for 0; ServiceError when it is taken, its
    text naming the flag or variable the user set (`named`)."""
    if not port:
        return free_port(host)
    if not port_free(host, port):
        raise ServiceError(f"cannot listen on {host}:{port}: the port is taken (choose another "
                           f"with {named}, or leave {named} out for any free one)")
    return port


def wait_ready(service: Service, workers: int, timeout: float, handler: str) -> dict[str, Any]:
    """Poll `GET /status` until the service says it is ready (every worker polling); a
    ServiceError when the service dies, the handler fails to initialise, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"forkric local exited with {service.process.returncode}:\n"
                               f"{service.log_tail()}")
        try:
            found = service.status(timeout=2.0)
        except (OSError, ServiceError, ValueError):
            pass  # not listening yet
        else:
            if ready(found, workers):
                return found
            if found.get("runtime", {}).get("init_failed"):
                raise ServiceError(f"the handler failed to initialise:\n{service.log_tail()}")
        time.sleep(POLL_S)
    raise ServiceError(f"{not_ready(found, workers, handler, timeout)} (give it longer with "
                       f"--wait-ready or FORKRIC_WAIT_READY_S); its log ends:\n"
                       f"{service.log_tail()}")


def ready(found: dict[str, Any], workers: int) -> bool:
    """The service's own `ready` when it says one; else every worker polling."""
    if "ready" in found:
        return bool(found["ready"])
    slots = found.get("workers", {}).get("slots", [])
    idle = [slot for slot in slots if slot.get("state") == "idle"]
    return len(idle) >= workers and found.get("pollers", workers) >= workers


def not_ready(found: dict[str, Any], workers: int, handler: str, timeout: float) -> str:
    """Why the service is not ready, in the user's terms: the import, or the workers."""
    if not found:
        return f"forkric local did not answer on its status endpoint within {timeout:g} s"
    slots = [s for s in found.get("workers", {}).get("slots", []) if s.get("state") != "empty"]
    if not slots:
        return (f"the handler's import ({handler}) had not finished after {timeout:g} s: "
                f"the workers are forked once it is done")
    polling = sum(1 for slot in slots if slot.get("state") == "idle")
    return f"{polling} of {workers} worker(s) were polling for invocations after {timeout:g} s"
