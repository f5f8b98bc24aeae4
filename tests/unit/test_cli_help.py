"""`forkric --help` as a new user reads it: one short line a command; the details on the
command's own --help."""

from __future__ import annotations

import pytest

from forkric import cli


def test_the_command_list_is_short_and_the_details_are_on_the_commands_page(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    listing = capsys.readouterr().out
    # soak's exit statuses filled seven lines of the list; they belong to soak --help.
    assert "130 or 143" not in listing
    assert "exit statuses: forkric soak --help" in " ".join(listing.split())
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["soak", "--help"])
    page = " ".join(capsys.readouterr().out.split())
    assert "exit 0 no leak, 3 leak, 4 inconclusive, 5 invocations failed" in page
    assert "130 or 143 (128 + the signal)" in page
