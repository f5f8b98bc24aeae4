"""Shared fixtures for the unit tests: handler fixture folders on sys.path, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forkric import marshal

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def code_dir(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Write modules into tmp_path, which is put on sys.path; the modules are forgotten after."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)

    def write(relative: str, source: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    yield write
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def _fresh_encoder() -> Iterator[None]:
    """forkric builds its encoder on first use: forget it around every test."""
    marshal._encoder = None
    yield
    marshal._encoder = None


def run_python(code: str, env: dict[str, str] | None = None, cwd: str | None = None,
               args: tuple[str, ...] = ()) -> str:
    """Run code in a fresh interpreter of this venv; returns stdout, fails the test on error."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in {"PYTHONPATH", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
                             "AWS_EXECUTION_ENV", "AWS_LAMBDA_LOG_FORMAT",
                             "AWS_LAMBDA_LOG_LEVEL", "_LAMBDA_TELEMETRY_LOG_FD"}}
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=full_env,
                          cwd=cwd or str(REPO), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
