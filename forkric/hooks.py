"""`@post_fork`: functions a handler module registers to run in each worker before its first poll,
as gunicorn's `post_fork` server hook (awslambdaric 4.1.0 shipped a `register_pre_fork`, then
withdrew it).

The rule for a hook: replace what the import made, never close it. The supervisor and every other
worker still hold the same socket: closing a psycopg connection in a worker sends PostgreSQL a
Terminate message on the connection they share. Make a new one and assign it:

    from forkric import post_fork

    conn = psycopg2.connect(DSN)

    @post_fork
    def reconnect() -> None:
        global conn
        conn = psycopg2.connect(DSN)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from forkric import errors

Hook = Callable[[], object]

# By (module, qualified name): a module imported again (import per worker, SIGHUP) replaces its
# hooks instead of adding them twice.
_registered: dict[tuple[str, str], Hook] = {}


def post_fork(function: Hook) -> Hook:
    """Register `function()` to run in each worker after forkric's own repairs, before the
    worker's first `/next`. Returns the function unchanged, so it stays callable (for example
    under awslambdaric, where no hook runs and the module's own objects are the process's own).

    An exception it raises stops that worker before it polls: the supervisor logs it and starts
    another under its backoff.
    """
    key = (getattr(function, "__module__", "") or "", getattr(function, "__qualname__", "")
           or repr(function))
    _registered[key] = function
    return function


def registered() -> list[Hook]:
    """The hooks, in the order they were first registered."""
    return list(_registered.values())


def load_setting(spec: str) -> Hook | None:
    """`--post-fork module:function` to the function (the module is imported now, in the
    supervisor). Raises LambdaError (`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`,
    `Runtime.MalformedHandlerName`) with the same wording as a bad handler."""
    if not spec:
        return None
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise errors.LambdaError(errors.MALFORMED_HANDLER_NAME,
                                 f"Bad post_fork hook '{spec}': expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.LambdaError(errors.IMPORT_MODULE_ERROR,
                                 f"Unable to import module '{module_name}': {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise errors.LambdaError(errors.HANDLER_NOT_FOUND,
                                 f"Handler '{function_name}' missing on module '{module_name}'")
    return post_fork(function)


def forget() -> None:
    """Before the handler's modules are imported again: their hooks register anew."""
    _registered.clear()
