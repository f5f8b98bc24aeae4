"""Imports a module that does not exist: Runtime.ImportModuleError naming the dependency."""

from __future__ import annotations

from typing import Any

import forkric_corpus_no_such_dependency  # noqa: F401


def handler(event: Any, context: Any) -> Any:
    return "unreachable"
