"""forkric.handler.load against awslambdaric.bootstrap._get_handler: same callable, or the same
init error (type, message, stack trace) for every way a handler string can go wrong."""

from __future__ import annotations

import site
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from awslambdaric import bootstrap
from awslambdaric.lambda_runtime_exception import FaultException

from forkric import errors, handler

Write = Callable[[str, str], Path]


def _forget(prefixes: tuple[str, ...]) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            del sys.modules[name]


def aws_outcome(name: str) -> Any:
    try:
        return bootstrap._get_handler(name)
    except FaultException as exc:
        return bootstrap.make_error(exc.msg, exc.exception_type, exc.trace)
    except Exception as exc:
        tb = exc.__traceback__
        assert tb is not None
        # awslambdaric's run() calls _get_handler: drop this test's frame so that the traceback
        # starts in bootstrap.py, as it does there.
        return bootstrap.build_fault_result((type(exc), exc, tb.tb_next), None)


def forkric_outcome(name: str) -> Any:
    try:
        return handler.load(name)
    except Exception as exc:
        tb = exc.__traceback__
        assert tb is not None
        exc.__traceback__ = tb.tb_next  # start in forkric, as the cli's call does
        return errors.from_exception(exc)[0]


def both(name: str, modules: tuple[str, ...] = ()) -> tuple[Any, Any]:
    aws = aws_outcome(name)
    _forget(modules)
    ours = forkric_outcome(name)
    return aws, ours


@pytest.fixture
def fixtures(code_dir: Write) -> Write:
    code_dir("good.py", """
        def handler(event, context):
            return "good"

        not_callable = 42
    """)
    code_dir("syntax_bad.py", """
        def handler(event, context):
            return (1,
        x = [
    """)
    code_dir("indent_bad.py", "def handler(e, c):\nreturn 1\n")
    code_dir("raises_at_import.py", """
        class MyInitError(Exception):
            pass

        def boom():
            raise MyInitError("failed during import: é")

        boom()
    """)
    code_dir("raises_value_error.py", "raise ValueError('bad config value')\n")
    code_dir("raises_import_error.py", "raise ImportError('custom import failure')\n")
    code_dir("imports_missing.py", "import missing_dependency_xyz\n")
    code_dir("exits_at_import.py", "raise KeyError('key')\n")
    code_dir("a/__init__.py", "")
    code_dir("a/b/__init__.py", "")
    code_dir("a/b/c.py", "def fn(event, context):\n    return 'nested'\n")
    code_dir("pkgmod/__init__.py", "")
    code_dir("pkgmod/sub.py", "def fn(event, context):\n    return 'dotted'\n")
    code_dir("empty_msg.py", "raise RuntimeError()\n")
    return code_dir


CASES = [
    "nodot",
    "",
    "good.handler",
    "good.missing_fn",
    "good.not_callable",
    "not_a_module_xyz.handler",
    "syntax_bad.handler",
    "indent_bad.handler",
    "raises_at_import.handler",
    "raises_value_error.handler",
    "raises_import_error.handler",
    "imports_missing.handler",
    "exits_at_import.handler",
    "empty_msg.handler",
    "a/b/c.fn",
    "a.b.c.fn",
    "a/b/c.missing",
    "a/b/nope.fn",
    "pkgmod.sub.fn",
    "sys.x",
    "sys/x.fn",
    "builtins.print",
    "_io.open",
    "os.getcwd",
    "json.loads",
    ".handler",
    "good.",
    "..x",
]

MODULE_ROOTS = ("good", "syntax_bad", "indent_bad", "raises_at_import", "raises_value_error",
                "raises_import_error", "imports_missing", "exits_at_import", "a", "pkgmod",
                "empty_msg")


@pytest.mark.parametrize("name", CASES)
def test_load_matches_awslambdaric(fixtures: Write, name: str) -> None:
    aws, ours = both(name, MODULE_ROOTS)
    if callable(aws) or not isinstance(aws, dict):
        assert ours is aws or (callable(ours) and ours.__qualname__ == aws.__qualname__)
    else:
        assert ours == aws


def test_malformed_name_wording() -> None:
    with pytest.raises(errors.LambdaError) as info:
        handler.load("nodot")
    assert info.value.error_type == "Runtime.MalformedHandlerName"
    assert info.value.message == (
        "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)")


def test_missing_module_wording() -> None:
    with pytest.raises(errors.LambdaError) as info:
        handler.load("not_a_module_xyz.handler")
    assert info.value.error_type == "Runtime.ImportModuleError"
    assert info.value.message == (
        "Unable to import module 'not_a_module_xyz': No module named 'not_a_module_xyz'")


def test_missing_function_wording(fixtures: Write) -> None:
    with pytest.raises(errors.LambdaError) as info:
        handler.load("good.nope")
    assert (info.value.error_type, info.value.message) == (
        "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'good'")


def test_builtin_conflict(fixtures: Write) -> None:
    with pytest.raises(errors.LambdaError) as info:
        handler.load("sys.x")
    assert (info.value.error_type, info.value.message) == (
        "Runtime.BuiltInModuleConflict", "Cannot use built-in module sys as a handler module")


def test_syntax_error_trace_entry(fixtures: Write) -> None:
    path = Path(sys.path[0]) / "syntax_bad.py"
    with pytest.raises(errors.LambdaError) as info:
        handler.load("syntax_bad.handler")
    assert info.value.error_type == "Runtime.UserCodeSyntaxError"
    assert info.value.message.startswith("Syntax error in module 'syntax_bad': ")
    (entry,) = info.value.trace
    assert entry.startswith(f'  File "{path}" Line ')
    assert "\n    " in entry


def test_exception_at_import_is_reported_under_its_class_name(fixtures: Write) -> None:
    ours = forkric_outcome("raises_at_import.handler")
    assert ours["errorType"] == "MyInitError"
    assert ours["errorMessage"] == "failed during import: é"
    assert ours["requestId"] == ""
    assert any("raises_at_import.py" in entry and "boom()" in entry
               for entry in ours["stackTrace"])
    assert not any("/forkric/" in entry for entry in ours["stackTrace"])


def test_nested_path_loads_dotted_module(fixtures: Write) -> None:
    function = handler.load("a/b/c.fn")
    assert function(None, None) == "nested"
    assert "a.b.c" in sys.modules


def test_module_importing_a_missing_module(fixtures: Write) -> None:
    with pytest.raises(errors.LambdaError) as info:
        handler.load("imports_missing.handler")
    assert info.value.message == (
        "Unable to import module 'imports_missing': No module named 'missing_dependency_xyz'")


def test_the_collector_is_paused_during_the_import_and_running_after(code_dir: Any) -> None:
    import gc

    before = gc.get_threshold()
    code_dir("gc_probe.py", "import gc\nTHRESHOLD_AT_IMPORT = gc.get_threshold()[0]\n"
                            "def handler(e, c):\n    return e\n")
    handler.load("gc_probe.handler")
    assert sys.modules["gc_probe"].THRESHOLD_AT_IMPORT == 0  # no automatic collection
    assert gc.isenabled()
    assert gc.get_threshold() == before


def test_what_the_import_does_to_the_collector_holds_after_it(code_dir: Any) -> None:
    """A handler that turns the collector off at import keeps it off, as under awslambdaric
    (the pause used to gc.enable() it again)."""
    import gc

    before = gc.get_threshold()
    code_dir("gc_off.py", "import gc\ngc.disable()\ngc.set_threshold(5000, 20, 20)\n"
                          "def handler(e, c):\n    return e\n")
    try:
        handler.load("gc_off.handler")
        assert not gc.isenabled()
        assert gc.get_threshold() == (5000, 20, 20)
    finally:
        gc.enable()
        gc.set_threshold(*before)


def test_forgetting_the_users_modules_keeps_a_virtual_environment_inside_the_task_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -m venv .venv` in the project folder: psutil's file is under the task root too.
    # Forgotten, psutil failed in every worker (KeyError: 'psutil') under --import-mode
    # per-worker, which auto chooses under forkric local.
    site_packages = tmp_path / ".venv" / "lib" / "python3" / "site-packages"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_packages)])
    library, mine = types.ModuleType("fake_installed_lib"), types.ModuleType("fake_user_mod")
    library.__file__ = str(site_packages / "fake_installed_lib.py")
    mine.__file__ = str(tmp_path / "fake_user_mod.py")
    monkeypatch.setitem(sys.modules, "fake_installed_lib", library)
    monkeypatch.setitem(sys.modules, "fake_user_mod", mine)
    assert handler.forget_modules(str(tmp_path)) == ["fake_user_mod"]
    assert sys.modules["fake_installed_lib"] is library
