"""A task root holding a module named like one forkric imports at start (`random.py`,
`signal.py`, a vendored `httptools` of another version): forkric answers as awslambdaric does.

The list of modules is not written by hand: it is what a worker of forkric holds in sys.modules
after serving, less what the interpreter loads before any code of forkric or awslambdaric runs
(those are imported before any path set-up, and so cannot be shadowed), less built-in and frozen
modules (no path entry can stand in for them). Each name then gets a task root of its own whose
`<name>.py` raises ImportError when imported, and a handler that imports nothing. Both runtimes
run under the real RIE: forkric as the image runs it (`python -m forkric`), awslambdaric as the
AWS base image runs it (tests/support/image_bootstrap.py: imported before the task root goes on
sys.path, not `python -m`, which would put the task root first from the start).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import differential, rie

pytestmark = pytest.mark.timeout(600)
PYTHON = sys.executable
APP = "def handler(event, context):\n    return {'ok': True}\n"
PROBE = ("import sys\n\n\ndef handler(event, context):\n"
         "    return sorted(name for name in sys.modules if name != __name__)\n")
SHADOW = ("raise ImportError('the task root\\'s {name}.py was imported in place of the "
          "runtime\\'s own module')\n")
# The package itself: a task root's forkric/ is not a module forkric imports but forkric.
BEFORE_FORKRIC = {"forkric"}
PARALLEL = 4
# Coverage's start-up hook (make test's `patch = subprocess`) imports random, ctypes and more
# before any runtime code: the runtimes run here as an image runs them, without it.
COVERAGE_ENV = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")


def _as_in_an_image(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in COVERAGE_ENV}


def _app_root(root: Path, shadow: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "app.py").write_text(APP)
    if shadow:
        (root / f"{shadow}.py").write_text(SHADOW.format(name=shadow))
    return root


def _invoke(command: list[str], task: Path, **env: str) -> tuple[int, bytes]:
    with rie.classic(command, task, _as_in_an_image(differential.env_for(task, **env)),
                     task.parent / f"rie-{task.name}.log") as emulator:
        reply = emulator.invoke({})
    return reply.status, differential.normalise_body(reply.body)


def _forkric(task: Path) -> tuple[int, bytes]:
    return _invoke([PYTHON, "-m", "forkric", "app.handler"], task)


def _awslambdaric(task: Path, runtime_dir: Path) -> tuple[int, bytes]:
    return _invoke([PYTHON, str(runtime_dir / "bootstrap.py")], task, _HANDLER="app.handler")


def _startup_modules() -> set[str]:
    listed = subprocess.run([PYTHON, "-c", "import sys; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True,
                            env=_as_in_an_image(rie.base_env()))
    return set(listed.stdout.split())


def _shadowable(modules: list[str]) -> list[str]:
    import _imp

    startup = _startup_modules()
    names = {name.split(".")[0] for name in modules if name not in startup}
    return sorted(name for name in names - BEFORE_FORKRIC - {n.split(".")[0] for n in startup}
                  if name not in sys.builtin_module_names and not _imp.is_frozen(name)
                  and not name.startswith("__"))


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of its own for the image-like bootstrap, as /var/runtime is."""
    folder = tmp_path_factory.mktemp("var-runtime")
    shutil.copy(Path(__file__).parents[1] / "support" / "image_bootstrap.py",
                folder / "bootstrap.py")
    return folder


@pytest.fixture(scope="module")
def shadowable(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("probe") / "task"
    root.mkdir()
    (root / "probe.py").write_text(PROBE)
    with rie.classic([PYTHON, "-m", "forkric", "probe.handler"], root,
                     _as_in_an_image(differential.env_for(root))) as emulator:
        reply = emulator.invoke({})
    assert reply.status == 200, reply
    return _shadowable(reply.json())


def test_the_list_is_forkrics_whole_start(shadowable: list[str]) -> None:
    # What forkric needs beyond the interpreter's start: its dependencies and the standard
    # library modules of its supervisor and workers, C extension modules included.
    for name in ("httptools", "psutil", "simplejson", "snapshot_restore_py", "random", "signal",
                 "socket", "argparse", "logging", "json", "ctypes", "_ctypes", "mmap"):
        assert name in shadowable, shadowable
    assert len(shadowable) > 40, shadowable


def test_every_module_forkric_imports_at_start(tmp_path: Path, runtime_dir: Path,
                                               shadowable: list[str]) -> None:
    def both(name: str) -> tuple[str, tuple[int, bytes], tuple[int, bytes]]:
        ours = _forkric(_app_root(tmp_path / f"forkric-{name}", name))
        peer = _awslambdaric(_app_root(tmp_path / f"awslambdaric-{name}", name), runtime_dir)
        return name, ours, peer

    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(both, shadowable))
    differ = {name: (ours, peer) for name, ours, peer in outcomes if ours != peer}
    assert not differ, differ
    answered = {name: ours for name, ours, _ in outcomes}
    assert answered["random"] == (200, b'{"ok": true}')
    assert answered["httptools"] == (200, b'{"ok": true}')
