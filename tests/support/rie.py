"""The real AWS Runtime Interface Emulator (RIE) as a test peer, without Docker.

The binary ships inside the `aws-sam-cli` wheel on PyPI; it is downloaded once with pip and cached.
Classic mode runs a command as the runtime, lazily on the first invoke, as the current user.
Managed-instances (LMI) mode starts `/var/runtime/bootstrap` at once as uid 993: it runs here in
a private mount namespace (`unshare -m`) with a tmpfs over /var and /opt and our folders bound in,
so a test gets the image's layout without touching the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAM_VERSION = "1.170.0"
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FORKRIC_TEST_CACHE", Path.home() / ".cache" / "forkric"))
# Readable by uid 993, which the RIE runs the bootstrap as in LMI mode (/root is not).
SHARED_CACHE = Path(tempfile.gettempdir()) / f"forkric-test-{os.getuid()}"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
LMI_DEPS = ("httptools>=0.6.4", "psutil", "simplejson>=3.19", "awslambdaric==4.2.2")


def _arch() -> str:
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def binary() -> Path:
    """The RIE binary, downloaded from PyPI (the aws-sam-cli wheel) on first use."""
    target = CACHE / f"aws-lambda-rie-{_arch()}-{SAM_VERSION}"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary", ":all:", "-d", tmp, f"aws-sam-cli=={SAM_VERSION}"],
                       check=True)
        wheel = next(Path(tmp).glob("aws_sam_cli-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(f"samcli/local/rapid/aws-lambda-rie-{_arch()}")
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.chmod(0o755)
        partial.replace(target)
    return target


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and not one this process handed out before: the kernel
    gives a closed port 0 bind the same number again, and two emulators would then collide."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh port on 127.0.0.1")


def wait_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    """Wait until something listens on the port (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def invoke(port: int, payload: Any = None, headers: Mapping[str, str] | None = None,
           timeout: float = 60.0, raw: bytes | None = None) -> Reply:
    """POST one invocation to an Invoke API on loopback."""
    body = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", INVOKE_PATH, body,
                     {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        conn.close()


@dataclass
class Emulator:
    process: subprocess.Popen
    port: int
    runtime_port: int
    log_path: Path
    cleanup: list[Path] = field(default_factory=list)

    def invoke(self, payload: Any = None, **kwargs: Any) -> Reply:
        return invoke(self.port, payload, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _start(argv: Callable[[int, int], list[str]], cwd: Path, env: Mapping[str, str],
           log_path: Callable[[int], Path], attempts: int = 3) -> Emulator:
    """Start the emulator on two fresh ports (Invoke API, Runtime API); if another process took
    one of them between the choice and the bind, again on others."""
    for attempt in range(attempts):
        port, runtime_port = free_port(), free_port()
        path = log_path(port)
        with path.open("wb") as log_file:
            process = subprocess.Popen(argv(port, runtime_port), cwd=cwd, env=dict(env),
                                       stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        emulator = Emulator(process, port, runtime_port, path)
        try:
            wait_port(port, process=process)
            return emulator
        except Exception:
            emulator.stop()
            if "address already in use" not in emulator.log() or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def base_env(**extra: str) -> dict[str, str]:
    """The test environment without the variables that would change the runtime's behaviour."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_LAMBDA_", "FORKRIC_", "_LAMBDA_", "_HANDLER", "PYTHON"))}
    env.update(extra)
    return env


@contextlib.contextmanager
def classic(command: list[str], task_dir: Path, env: Mapping[str, str] | None = None,
            log_path: Path | None = None) -> Iterator[Emulator]:
    """The RIE in classic mode, running `command` (for example `python -m forkric app.handler`)."""
    def argv(port: int, runtime_port: int) -> list[str]:
        return [str(binary()), "--runtime-api-address", f"127.0.0.1:{runtime_port}",
                "--runtime-interface-emulator-address", f"127.0.0.1:{port}", *command]

    emulator = _start(argv, task_dir, env if env is not None else base_env(),
                      lambda port: log_path or task_dir / f"rie-{port}.log")
    try:
        yield emulator
    finally:
        emulator.stop()


def readable_dir(prefix: str) -> Path:
    """A fresh folder that uid 993 can read, as the RIE's LMI mode needs."""
    SHARED_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    SHARED_CACHE.chmod(0o755)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHARED_CACHE))
    path.chmod(0o755)
    return path


def _make_readable(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
                           | (stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    root.chmod(root.stat().st_mode | 0o755)


DEBIAN_PYTHON = Path("/usr/bin/python3")


def readable_python(version: str) -> Path | None:
    """pyenv's newest CPython `version` ("3.13") copied under SHARED_CACHE, where uid 993 can
    run it (/root is closed to it); None when pyenv has no such build. The copy finds its
    standard library next to itself; its libpython needs `library_path_line` in the bootstrap."""
    found = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    if not found:
        return None
    source = found[-1].parents[1]
    target = SHARED_CACHE / f"python-{source.name}"
    if not (target / ".ready").exists():
        shutil.rmtree(target, ignore_errors=True)
        SHARED_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copytree(source, target, symlinks=True)
        _make_readable(target)
        (target / ".ready").touch()
    return target / "bin" / f"python{version}"


def library_path_line(python: Path) -> str:
    """A bootstrap line that lets a copied interpreter find its libpython (its RUNPATH still
    names the pyenv folder under /root); empty for Debian's."""
    if python == DEBIAN_PYTHON:
        return ""
    return f'export LD_LIBRARY_PATH="{python.parents[1] / "lib"}"\n'


def system_python(extra: tuple[str, ...] = (), base: Path = DEBIAN_PYTHON) -> Path:
    """A venv over an interpreter uid 993 can read (Debian's /usr/bin/python3 by default, or a
    `readable_python`) holding forkric's dependencies and awslambdaric, and `extra`
    requirements; forkric itself is copied in fresh from this checkout."""
    if not base.exists():
        raise RuntimeError(f"LMI tests need {base}, readable by uid 993")
    version = subprocess.run([str(base), "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256((version + repr(LMI_DEPS + extra)).encode()).hexdigest()[:12]
    venv = SHARED_CACHE / f"venv-{key}"
    site = Path(subprocess.run(
        [str(base), "-c", "import sysconfig; print(sysconfig.get_path('purelib', vars="
         f"{{'base': '{venv}', 'platbase': '{venv}'}}))"],
        capture_output=True, text=True, check=True).stdout.strip())
    if not (venv / ".ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        SHARED_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
        # The test's own pip installs for the same Python version and ABI into the venv;
        # another version's interpreter uses its own pip.
        pip = sys.executable if base == DEBIAN_PYTHON else str(base)
        subprocess.run([pip, "-m", "pip", "install", "--quiet", "--target", str(site),
                        *LMI_DEPS, *extra], check=True)
        (venv / ".ready").touch()
    package = site / "forkric"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(REPO / "forkric", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _make_readable(venv)
    return venv / "bin" / "python3"


_NAMESPACE_SCRIPT = """set -e
mount -t tmpfs tmpfs /var
mkdir -p /var/runtime /var/task
mount --bind "$FORKRIC_T_RUNTIME" /var/runtime
mount --bind "$FORKRIC_T_TASK" /var/task
mount -t tmpfs tmpfs /opt
if [ -n "$FORKRIC_T_OPT" ]; then mkdir -p /opt/python; mount --bind "$FORKRIC_T_OPT" /opt/python; fi
cd /var/task
unset FORKRIC_T_RUNTIME FORKRIC_T_TASK FORKRIC_T_OPT
exec "$@"
"""


@contextlib.contextmanager
def managed_instances(runtime_dir: Path, task_dir: Path, concurrency: int,
                      env: Mapping[str, str] | None = None, opt_python: Path | None = None,
                      log_path: Path | None = None) -> Iterator[Emulator]:
    """The RIE in LMI mode: it starts `runtime_dir/bootstrap` (bound on /var/runtime) at once,
    as uid 993, with `task_dir` on /var/task and `opt_python` on /opt/python."""
    if os.getuid() != 0 or shutil.which("unshare") is None:
        raise RuntimeError("LMI mode needs root and unshare(1) for a private mount namespace")
    for folder in (runtime_dir, task_dir, *([opt_python] if opt_python else [])):
        _make_readable(folder)
    fd, name = tempfile.mkstemp(prefix="namespace-", suffix=".sh", dir=runtime_dir.parent)
    os.close(fd)
    script = Path(name)
    script.write_text(_NAMESPACE_SCRIPT)
    full_env = dict(env if env is not None else base_env())
    full_env.update(AWS_LAMBDA_MAX_CONCURRENCY=str(concurrency), FORKRIC_T_RUNTIME=str(runtime_dir),
                    FORKRIC_T_TASK=str(task_dir), FORKRIC_T_OPT=str(opt_python or ""))

    def argv(port: int, runtime_port: int) -> list[str]:
        return ["unshare", "-m", "--propagation", "private", "sh", str(script), str(binary()),
                "--runtime-api-address", f"127.0.0.1:{runtime_port}",
                "--runtime-interface-emulator-address", f"127.0.0.1:{port}"]

    emulator = _start(argv, task_dir, full_env,
                      lambda port: log_path or runtime_dir.parent / f"rie-lmi-{port}.log")
    try:
        yield emulator
    finally:
        emulator.stop()


def write_bootstrap(runtime_dir: Path, python: Path, module: str = "forkric",
                    extra: str = "") -> Path:
    """A minimal /var/runtime/bootstrap that runs `python -m MODULE $_HANDLER`."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    path = runtime_dir / "bootstrap"
    path.write_text(f'#!/bin/sh\n{extra}exec "{python}" -m {module} "$_HANDLER"\n')
    path.chmod(0o755)
    return path


def wait_ready(emulator: Emulator, payload: Any = None, timeout: float = 30.0) -> Reply:
    """Invoke until the emulator answers something other than 'no runtime is ready' (LMI mode
    rejects invokes with HTTP 400 Runtime.Unavailable while no worker polls /next)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = emulator.invoke(payload)
        if reply.status != 400 or b"Runtime.Unavailable" not in reply.body:
            return reply
        if time.monotonic() > deadline:
            raise TimeoutError(f"no runtime became ready in {timeout} s:\n{emulator.log()[-2000:]}")
        time.sleep(0.05)
