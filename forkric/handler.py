"""Handler string (`module.function`, `a/b/c.fn`) to callable, with Lambda's init error types."""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import site
import sys
from collections.abc import Callable, Iterator
from typing import Any

from forkric import errors

Handler = Callable[[Any, Any], Any]


def _split(name: str) -> tuple[str, str]:
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as exc:
        raise errors.LambdaError(
            errors.MALFORMED_HANDLER_NAME, f"Bad handler '{name}': {exc}") from None
    return module_name, function_name


def _import(module_name: str) -> Any:
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise errors.LambdaError(
            errors.BUILT_IN_MODULE_CONFLICT,
            f"Cannot use built-in module {module_name} as a handler module")
    try:
        return importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise errors.LambdaError(
            errors.IMPORT_MODULE_ERROR,
            f"Unable to import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise errors.LambdaError(
            errors.USER_CODE_SYNTAX_ERROR,
            f"Syntax error in module '{module_name}': {exc}", trace) from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A heavy module builds millions of objects at import, and every full collection that its
    allocations trigger walks all of them again: measured on a 230 MB module, the import took
    2.05 s with the collector running and 0.88 s paused. The supervisor collects once after.

    Paused by a zero threshold rather than gc.disable(), so that what the import itself does to
    the collector stays as it left it: a gc.disable() or gc.set_threshold() there holds in every
    worker, as in a process that imported alone."""
    thresholds = gc.get_threshold()
    gc.set_threshold(0)
    try:
        yield
    finally:
        if gc.get_threshold()[0] == 0:  # the import did not set thresholds of its own
            gc.set_threshold(*thresholds)


def _installed_roots() -> tuple[str, ...]:
    """The folders installed libraries live in: the interpreter's prefixes and site-packages."""
    folders = {sys.prefix, sys.exec_prefix, sys.base_prefix, *site.getsitepackages(),
               site.getusersitepackages()}
    return tuple(os.path.realpath(folder) + os.sep for folder in folders if folder)


def forget_modules(task_root: str) -> list[str]:
    """Drop the user's own modules (those under the task root) from sys.modules, so that the next
    import runs their code again; returns their names."""
    root = os.path.realpath(task_root) + os.sep
    installed = _installed_roots()
    forgotten = []
    for module_name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        path = os.path.realpath(file) if file else ""
        # A virtual environment inside the project folder (.venv) is under the task root too;
        # its libraries (psutil, forkric itself) are not the user's, and must stay imported.
        if path.startswith(root) and not path.startswith(installed):
            del sys.modules[module_name]
            forgotten.append(module_name)
            # Its bytecode is checked against the source's mtime in whole seconds and its size:
            # an edit within the second that keeps the size would import the old code again.
            with contextlib.suppress(OSError, TypeError):
                os.unlink(getattr(module, "__cached__", None) or "")
    importlib.invalidate_caches()
    return forgotten


def load(name: str) -> Handler:
    """Import the handler's module and return the function.

    Raises LambdaError for the runtime's own init errors; any other exception the module raises
    at import propagates, and is reported under its own class name.
    """
    module_name, function_name = _split(name)
    with _collector_paused():
        module = _import(module_name)
    try:
        function: Handler = getattr(module, function_name)
        return function
    except AttributeError:
        raise errors.LambdaError(
            errors.HANDLER_NOT_FOUND,
            f"Handler '{function_name}' missing on module '{module_name}'") from None
