"""Raises at import: the init error's type is the exception's class name."""

from __future__ import annotations

from typing import Any


class ConfigurationError(Exception):
    pass


def _load() -> None:
    raise ConfigurationError("missing setting: TABLE_NAME — é")


_load()


def handler(event: Any, context: Any) -> Any:
    return "unreachable"
