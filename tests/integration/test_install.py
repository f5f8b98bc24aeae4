"""The wheel as a user installs it (issue 13, items 2 and 4): built from this clone, installed into
a fresh virtual environment with its dependencies from the package index, then run from another
folder. Each extra's commands say what is missing, in one line, before they start anything;
`forkric invoke` needs none of them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local import local

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def run(*argv: str | Path, cwd: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # The user's shell: none of this clone's settings or paths.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORKRIC_", "PYTHON", "VIRTUAL_ENV", "_HANDLER"))}
    return subprocess.run([str(part) for part in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `make dist` builds (here without build isolation: the same backend, no
    download of it)."""
    out = tmp_path_factory.mktemp("dist")
    done = run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [built] = out.glob("forkric-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A fresh virtual environment with the wheel alone (no extra) installed: its bin folder."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    done = run(sys.executable, "-m", "venv", root)
    assert done.returncode == 0, done.stderr
    done = run(root / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    assert done.returncode == 0, done.stderr[-3000:]
    yield root / "bin"


def test_the_wheel_ships_every_command_and_the_locustfile(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "forkric/soak/locustfile.py" in names
    assert {"forkric/__main__.py", "forkric/cli.py", "forkric/invoke.py", "forkric/load.py",
            "forkric/local/console.py", "forkric/local/reload.py"} <= names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    for extra in ("local", "load", "soak"):
        assert f"Provides-Extra: {extra}" in text


def test_the_installed_commands_run_from_any_folder(venv: Path, tmp_path: Path) -> None:
    done = run(venv / "forkric", "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "forkric 0.1.0")
    done = run(venv / "python", "-m", "forkric", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("run", "local", "soak", "invoke", "load"):
        assert command in done.stdout
    # The base install has none of the extras' modules.
    assert run(venv / "python", "-c", "import uvicorn").returncode != 0


@pytest.mark.parametrize(("command", "missing", "extra"), [
    ("local", "uvicorn", "local"),
    ("soak", "uvicorn, locust, matplotlib", "soak"),
    ("load", "locust", "load"),
])
def test_a_missing_extra_is_one_line_before_anything_starts(
        venv: Path, tmp_path: Path, command: str, missing: str, extra: str) -> None:
    args = [] if command == "load" else ["app.handler"]
    done = run(venv / "forkric", command, *args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"forkric {command}: needs {missing}: pip install "
                           f"'forkric[{extra}]' (from a clone: pip install '.[{extra}]')\n")
    assert done.stdout == ""  # nothing started: no service, no runtime


def test_invoke_works_on_the_base_install(venv: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "echo.py").write_text("def handler(event, context):\n    return event\n")
    with local("echo.handler", task, workers=1, log_path=tmp_path / "log") as service:
        done = run(venv / "forkric", "invoke", "--port", str(service.port), "--payload",
                   '{"installed": true}', cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP 200 OK\n")
    assert '"installed": true' in done.stdout


def test_with_the_local_extra_soak_names_what_it_still_needs(venv: Path, wheel: Path,
                                                            tmp_path: Path) -> None:
    done = run(venv / "pip", "install", "--quiet", "--disable-pip-version-check",
               f"{wheel}[local]")
    assert done.returncode == 0, done.stderr[-3000:]
    done = run(venv / "forkric", "soak", "app.handler", "--duration", "5", cwd=tmp_path,
               timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("forkric soak: needs locust, matplotlib: pip install "
                                  "'forkric[soak]'")
    assert done.stdout == ""
    assert not (tmp_path / "soak-out").exists()  # it made nothing
    done = run(venv / "forkric", "local", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--reload" in done.stdout
