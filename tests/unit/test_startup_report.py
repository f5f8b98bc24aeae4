"""The start-up report's mode line when the user wrote a @post_fork hook: the report's advice for
a connection is a hook, and `auto` cannot tell what a hook replaces, so the line says how to keep
the shared import (a user who followed the advice lost it without a word)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forkric import hooks, prefork, startup_report


@pytest.fixture(autouse=True)
def no_hooks() -> Iterator[None]:
    hooks.forget()
    yield
    hooks.forget()


def found_socket() -> prefork.Inheritance:
    return prefork.Inheritance(mode=prefork.PER_WORKER, findings=[prefork.Finding(
        "socket", "TCP connection to 127.0.0.1:5432 (fd 3)", "shut down", "use a hook")])


def test_auto_without_hooks_says_what_the_mode_costs() -> None:
    last = startup_report.lines(found_socket(), prefork.AUTO)[-1]
    assert "memory of the handler's own objects is not shared" in last


def test_auto_with_a_hook_says_how_to_keep_the_shared_import() -> None:
    hooks.post_fork(lambda: None)
    last = startup_report.lines(found_socket(), prefork.AUTO)[-1]
    assert "@post_fork hooks are registered" in last
    assert "FORKRIC_IMPORT_MODE=once keeps the shared import" in last
