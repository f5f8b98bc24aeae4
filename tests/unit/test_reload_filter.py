"""What `forkric local --reload` watches: the function's Python files, not the virtual
environments, caches and VCS folders a project keeps beside them (a `pip install` or a test run
there reloaded the function for nothing). Real folders and files."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from forkric.local.reload import TaskRootFilter


def touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return str(path)


@pytest.mark.parametrize("inside", [
    "venv/lib/python3.11/site-packages/six.py",  # python -m venv venv
    ".venv/lib/python3.11/site-packages/six.py",
    "myenv/lib/python3.11/site-packages/six.py",  # any name: it holds pyvenv.cfg
    "__pycache__/app.cpython-311.py",
    ".git/hooks/pre-commit.py",
    "node_modules/x/build.py",
    ".mypy_cache/3.11/app.py",
    ".pytest_cache/v/cache/x.py",
    ".tox/py311/lib/x.py",
    ".nox/tests/lib/x.py",
    "app.pyc",
    "notes.txt",
])
def test_what_is_not_the_function_is_ignored(tmp_path: Path, inside: str) -> None:
    touch(tmp_path / "myenv" / "pyvenv.cfg")
    watched = TaskRootFilter(str(tmp_path))
    assert not watched(Change.modified, touch(tmp_path / inside))


@pytest.mark.parametrize("inside", ["app.py", "lib/helpers.py", "environment.py",
                                    "venvs_doc.py", "pkg/mod.pyx"])
def test_the_functions_files_are_watched(tmp_path: Path, inside: str) -> None:
    watched = TaskRootFilter(str(tmp_path))
    assert watched(Change.modified, touch(tmp_path / inside))
    assert watched(Change.deleted, str(tmp_path / inside))


def test_a_task_root_under_a_folder_named_like_a_venv_is_watched(tmp_path: Path) -> None:
    # Folder names count below the task root only: /srv/venv/app is a task root like any.
    root = tmp_path / "venv" / "app"
    assert TaskRootFilter(str(root))(Change.modified, touch(root / "app.py"))
