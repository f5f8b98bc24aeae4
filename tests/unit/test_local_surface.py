"""The parts of `forkric local` that carry Lambda's newer surface: the metadata endpoint's
answers, the Invoke API's JSON check, and the SnapStart snapshot phase's timing."""

from __future__ import annotations

import asyncio
import json

import pytest

from forkric.local import answers, metadata
from forkric.local.snapshot import Snapshot


@pytest.mark.parametrize(("region", "zone"), [
    ("us-east-1", "use1-az1"), ("eu-central-1", "euc1-az1"), ("ap-southeast-2", "apse2-az1"),
    ("ap-northeast-1", "apne1-az1"), ("us-gov-west-1", "usgw1-az1"), ("ca-west-1", "caw1-az1"),
    ("nowhere", "use1-az1")])
def test_availability_zone_id(region: str, zone: str) -> None:
    assert metadata.availability_zone_id(region) == zone


def test_metadata_answer() -> None:
    status, body, headers = metadata.answer("Bearer t0k", "t0k", "eu-west-1")
    assert (status, json.loads(body)) == (200, {"AvailabilityZoneID": "euw1-az1"})
    assert (b"cache-control", b"private, max-age=43200, immutable") in headers
    for refused in (None, "", "t0k", "Bearer t0", "bearer t0k", "Bearer t0k "):
        status, _, headers = metadata.answer(refused, "t0k", "eu-west-1")
        assert status == 401, refused
        assert not any(name == b"cache-control" for name, _ in headers)


def test_tokens_differ() -> None:
    assert metadata.new_token() != metadata.new_token()
    assert len(metadata.new_token()) >= 32


@pytest.mark.parametrize(("payload", "valid"), [
    (b"", True), (b"{}", True), (b"[1,2]", True), (b'"text"', True), (b"null", True),
    (b"1e400", True), (b'{"a":1,"a":2}', True), ('{"é": "ü"}'.encode("utf-16"), True),
    (b"{", False), (b"NaN", False), (b"-Infinity", False), (b"\xff", False), (b"{} x", False)])
def test_json_problem(payload: bytes, valid: bool) -> None:
    assert (answers.json_problem(payload) is None) is valid


def test_after_restore_time_limit() -> None:
    said: list[str] = []

    async def phase(poll: bool) -> bool:
        timed_out = asyncio.Event()
        snapshot = Snapshot(True, said.append, timed_out.set, pause_s=0.01, limit_s=0.05)
        await snapshot.restore_next()
        if poll:
            snapshot.done()
            await asyncio.sleep(0.2)  # past the limit: nothing may fire (an absence, not a wait)
            return timed_out.is_set()
        await asyncio.wait_for(timed_out.wait(), 10)
        return True

    assert asyncio.run(phase(poll=True)) is False
    assert asyncio.run(phase(poll=False)) is True
    assert any("took over" in line for line in said)


def test_the_start_line_says_the_workers_that_will_run(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    # Found by trying: --workers 100000 announced "100000 worker(s)", then 256 became ready.
    import argparse

    from forkric import config
    from forkric.local import _announce, options
    from forkric.scoreboard import CAPACITY

    cfg = config.load("app.handler", {"workers": "100000"}, {}, "local")
    _announce(options(argparse.Namespace(), cfg), 9000, "127.0.0.1:1")
    assert (f"forkric local: {CAPACITY} worker(s) of app.handler (the most the scoreboard "
            f"holds: 100000 asked for), timeout 3 s") in capsys.readouterr().out
    _announce(options(argparse.Namespace(), config.load("app.handler", {"workers": "3"}, {},
                                                        "local")), 9000, "127.0.0.1:1")
    assert "forkric local: 3 worker(s) of app.handler, timeout 3 s" in capsys.readouterr().out
