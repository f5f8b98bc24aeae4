"""The soak's verdict and its warnings, from estimates and run facts made here: leak, no leak,
inconclusive (never "no leak" for what was not measured), failures, the limit that recycles
every call, the safety limit; the start-up wait's words; the port."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from forkric.config import Config
from forkric.soak import Limit, alerts, leak, memory_limit, service, verdict
from forkric.soak.logscan import Recycle
from forkric.soak.sampler import Snapshot


def facts(**given: Any) -> verdict.Run:
    found: dict[str, Any] = {"limit_mb": 80.0, "safety_limit": False, "duration_s": 30.0,
                             "elapsed_s": 30.0, "workers": 2, "invocations": 12_000,
                             "failures": 0, "failures_by_error": {}}
    found.update(given)
    return verdict.Run(**found)


def estimate(outcome: str, kb: float = 0.0, span: float = 6_000.0) -> leak.LeakEstimate:
    return leak.LeakEstimate(outcome == leak.LEAK, kb, 1.0 if kb else 0.0, 0.9, 1.0, 4,
                             int(span * 4), kb * span / 1024, verdict=outcome,
                             resolution_kb_per_invocation=leak.resolution(span),
                             lifetime_invocations=span, base_kb=4_096.0, reason="why")


def recycles(count: int, invocations: int, first_kb: float = 4_500.0) -> list[Recycle]:
    return [Recycle(100 + i, i % 2, invocations, 80 * 1024, 1, first_kb) for i in range(count)]


def test_each_outcome_has_its_exit_status() -> None:
    assert verdict.decide(estimate(leak.LEAK, 64), facts()).status == verdict.EXIT_LEAK == 3
    assert verdict.decide(estimate(leak.NO_LEAK), facts()).status == verdict.EXIT_NO_LEAK == 0
    assert verdict.decide(estimate(leak.INCONCLUSIVE), facts()).status == 4


def test_failed_invocations_fail_a_soak_that_found_no_leak() -> None:
    run = facts(failures=7, failures_by_error={"function error: ValueError": 5,
                                               "invoke: HTTP 429": 2})
    decided = verdict.decide(estimate(leak.NO_LEAK), run)
    assert decided.status == verdict.EXIT_INVOCATIONS_FAILED
    assert decided.warnings == ["7 of 12000 invocations failed (function error: ValueError: 5, "
                                "invoke: HTTP 429: 2)"]
    assert verdict.decide(estimate(leak.LEAK, 64), run).status == verdict.EXIT_LEAK


def test_time_to_the_limit_from_the_first_invocation() -> None:
    run = facts(memory_recycles=recycles(4, 1_200, first_kb=4_096))
    decided = verdict.decide(estimate(leak.LEAK, 64), run)
    assert decided.invocations_to_limit == pytest.approx((80 * 1024 - 4_096) / 64)
    assert decided.seconds_to_limit == pytest.approx(decided.invocations_to_limit / 200)
    headline = decided.headline(estimate(leak.LEAK, 64))
    assert headline.startswith("LEAK: 64.0 KB per invocation")
    assert "reaches the --max-worker-memory 80 MB limit after 1,216 invocations (6.1 s" \
        in headline


def test_a_limit_that_recycles_every_call_is_inconclusive_and_says_so() -> None:
    run = facts(limit_mb=2.0, memory_recycles=recycles(20, 1, first_kb=5_400))
    decided = verdict.decide(estimate(leak.INCONCLUSIVE), run)
    assert decided.status == verdict.EXIT_INCONCLUSIVE
    assert decided.advice.startswith("raise --max-worker-memory: at 2 MB workers were recycled")
    assert decided.warnings == [
        "--max-worker-memory 2 MB recycles workers on nearly every invocation: it is below what "
        "one invocation needs (a worker's private memory after its first one: 5.3 MB); the "
        "unit is MB: did you mean 2048?"]


def every_few(count: int, every: int, limit_mb: float = 24.0) -> list[Recycle]:
    """Recycles of workers that held 8.5 MB after their first invocation and passed the limit
    after `every` (a bounded cache of 4 MB entries)."""
    return [Recycle(100 + i, i % 2, every, (limit_mb + 1) * 1024, 1, 8.5 * 1024)
            for i in range(count)]


def test_recycles_every_few_invocations_make_any_verdict_inconclusive() -> None:
    # A bounded cache of 16 x 4 MB under a 24 MB limit: recycled every 6 invocations, it was
    # reported as a leak of 4,137 KB per invocation, exit 3, without a word on the limit.
    run = facts(limit_mb=24.0, invocations=1_282, memory_recycles=every_few(213, 6))
    for outcome in (leak.LEAK, leak.NO_LEAK, leak.INCONCLUSIVE):
        decided = verdict.decide(estimate(outcome, 4_137 if outcome == leak.LEAK else 0), run)
        assert (decided.outcome, decided.status) == (leak.INCONCLUSIVE, 4), outcome
    assert decided.why == ("workers were recycled for memory every 6.0 invocations, within the "
                           "first 20 of a lifetime that are warm-up: their growth is the "
                           "working set, not a leak")
    assert decided.advice == ("raise --max-worker-memory above the handler's working set (at "
                              "24 MB workers held 25.0 MB when recycled)")
    assert decided.warnings == [
        "workers were recycled for memory every 6.0 invocations (213 recycles in 1282 "
        "invocations): the --max-worker-memory 24 MB limit is below the handler's working set "
        "(a worker held 8.5 MB after its first invocation, 25.0 MB when recycled), so leak "
        "measurement is meaningless and the verdict inconclusive; raise --max-worker-memory"]
    # At the safety limit, its own flag is the way out.
    safety = facts(limit_mb=64.0, safety_limit=True, invocations=1_000,
                   memory_recycles=every_few(100, 10, limit_mb=64.0))
    decided = verdict.decide(estimate(leak.LEAK, 5_000), safety)
    assert decided.status == 4 and decided.warnings[0].endswith("raise --safety-limit")
    assert "the soak's safety limit of 64 MB is below" in decided.warnings[0]


def test_a_leak_that_recycles_its_workers_past_their_warm_up_is_still_a_leak() -> None:
    # 400 KB per call under 80 MB: a recycle every 190 invocations, each lifetime a measurement.
    run = facts(invocations=2_850, memory_recycles=every_few(15, 190, limit_mb=80.0))
    decided = verdict.decide(estimate(leak.LEAK, 400), run)
    assert (decided.status, decided.warnings) == (verdict.EXIT_LEAK, [])
    # Two recycles say nothing sure yet, however quick.
    few = facts(invocations=10, memory_recycles=every_few(2, 5))
    assert verdict.decide(estimate(leak.LEAK, 400), few).status == verdict.EXIT_LEAK


def test_short_lifetimes_under_a_limit_ask_for_a_higher_limit() -> None:
    run = facts(memory_recycles=recycles(6, 300))
    advice = verdict.decide(estimate(leak.INCONCLUSIVE, span=300), run).advice
    assert advice == ("raise --max-worker-memory above 80 MB: its recycles cut lifetimes to "
                      "about 300 invocations, and 1,024 are needed")


def test_a_short_run_asks_for_a_longer_one() -> None:
    run = facts(limit_mb=0.0, duration_s=2.0, elapsed_s=2.0, invocations=800)
    advice = verdict.decide(estimate(leak.INCONCLUSIVE, span=200), run).advice
    # 200 invocations a second per worker: 1,024 take 5 s; half again, and the warm-up.
    assert advice.startswith("run longer: --duration 13 or more (a worker served 200 ")


def test_the_safety_limit_is_said() -> None:
    run = facts(limit_mb=1024.0, safety_limit=True, memory_recycles=recycles(2, 2_600))
    decided = verdict.decide(estimate(leak.LEAK, 400), run)
    assert decided.limit == "soak's safety limit of 1024 MB"
    assert any("safety limit of 1024 MB (no --max-worker-memory given)" in text
               for text in decided.warnings)


def test_an_interrupted_run_says_how_long_it_ran() -> None:
    decided = verdict.decide(estimate(leak.NO_LEAK), facts(elapsed_s=9.2, interrupted=True))
    assert decided.warnings == ["stopped early: 9.2 s of the 30 s asked"]


def test_an_interrupted_run_is_never_a_pass() -> None:
    # Stopped by Ctrl-C or a CI job's SIGTERM after enough to say "no leak", the soak exited 0.
    run = facts(elapsed_s=9.2, interrupted=True, signal=signal.SIGINT)
    decided = verdict.decide(estimate(leak.NO_LEAK), run)
    assert (decided.outcome, decided.status) == (leak.INCONCLUSIVE, 130)
    assert decided.headline(estimate(leak.NO_LEAK)) == (
        "INTERRUPTED: stopped by SIGINT after 9.2 s of the 30 s asked, so no verdict; what ran: "
        "why")
    assert decided.warnings == ["stopped early by SIGINT: 9.2 s of the 30 s asked"]
    sigterm = facts(elapsed_s=9.2, interrupted=True, signal=signal.SIGTERM)
    assert verdict.decide(estimate(leak.INCONCLUSIVE), sigterm).status == 143
    # Stopped early without a signal (the load's process died): inconclusive.
    assert verdict.decide(estimate(leak.NO_LEAK), facts(elapsed_s=9.2, interrupted=True)).status \
        == verdict.EXIT_INCONCLUSIVE
    # What was already proven stands: a leak, failures.
    leaked = verdict.decide(estimate(leak.LEAK, 64), run)
    assert (leaked.status, leaked.interrupted) == (verdict.EXIT_LEAK, "by SIGINT")
    assert leaked.headline(estimate(leak.LEAK, 64)).startswith("LEAK: 64.0 KB")
    failed = facts(elapsed_s=9.2, interrupted=True, signal=signal.SIGINT, failures=3)
    assert verdict.decide(estimate(leak.NO_LEAK), failed).status == verdict.EXIT_INVOCATIONS_FAILED


def test_without_a_limit_the_soak_sets_a_safety_limit() -> None:
    assert memory_limit(Config(max_worker_memory_mb=100.0)) == Limit(100.0, safety=False)
    found = memory_limit(Config(workers=2))
    assert found.safety and 64 <= found.mb <= 1024


def test_the_safety_limit_is_the_users_to_set() -> None:
    # It was a constant 1024 MB: a handler whose working set is larger had no way out.
    assert memory_limit(Config(workers=1, safety_limit_mb=100.0)) == Limit(100.0, safety=True)
    assert memory_limit(Config(workers=1, safety_limit_mb=100.0,
                               max_worker_memory_mb=300.0)) == Limit(300.0, safety=False)
    # Never more than a share of the available memory, whatever is asked.
    assert memory_limit(Config(workers=1, safety_limit_mb=1e12)).mb < 1e12


def snapshot(failed: int = 0) -> Snapshot:
    return Snapshot(1.0, (), {}, 1, 10, failed)


LINE = ("[WARNING]\t2026-01-01T00:00:05.000Z\tid\tforkric: recycling worker 0 (pid {pid}): "
        "private memory 5.4 MB over the 2 MB limit after 1 invocations (5.4 MB after 1)\n")


def test_alerts_say_a_limit_that_recycles_every_call_once(tmp_path: Path) -> None:
    log = tmp_path / "forkric.log"
    log.write_text(LINE.format(pid=1) + LINE.format(pid=2))
    watch = alerts.Alerts(2.0, False, log)
    assert watch.check(snapshot()) == []  # two recycles: not yet enough to be sure
    with log.open("a") as file:
        file.write(LINE.format(pid=3) + LINE.format(pid=4)[:40])  # the last line half written
    (said,) = watch.check(snapshot())
    assert said.startswith("--max-worker-memory 2 MB recycles workers on nearly every")
    assert len(watch.recycles) == 3
    with log.open("a") as file:
        file.write(LINE.format(pid=4)[40:])
    assert watch.check(snapshot()) == [] and len(watch.recycles) == 4


FEW = ("[WARNING]\t2026-01-01T00:00:05.000Z\tid\tforkric: recycling worker 0 (pid {pid}): "
       "private memory 25.0 MB over the 24 MB limit after 6 invocations (8.5 MB after 1)\n")


def test_alerts_say_recycles_every_few_invocations_during_the_load(tmp_path: Path) -> None:
    log = tmp_path / "forkric.log"
    log.write_text("".join(FEW.format(pid=pid) for pid in range(1, 4)))
    watch = alerts.Alerts(24.0, False, log)
    (said,) = watch.check(Snapshot(1.0, (), {}, 1, 18, 0))
    assert said.startswith("workers were recycled for memory every 6.0 invocations (3 recycles "
                           "in 18 invocations): the --max-worker-memory 24 MB limit is below")
    assert watch.check(Snapshot(2.0, (), {}, 1, 24, 0)) == []  # said once
    # Recycles that leave a lifetime its warm-up and more: nothing to say.
    assert alerts.Alerts(24.0, False, log).check(Snapshot(1.0, (), {}, 1, 600, 0)) == []


def test_alerts_say_failures_at_once(tmp_path: Path) -> None:
    watch = alerts.Alerts(80.0, False, tmp_path / "none.log")
    assert watch.check(snapshot(failed=0)) == []
    assert watch.check(snapshot(failed=3)) == [
        "invocations are failing (3 so far): the soak will fail; the report names their errors"]
    assert watch.check(snapshot(failed=9)) == []


def test_ready_from_the_service_or_from_the_pollers() -> None:
    slots = {"slots": [{"state": "idle"}, {"state": "idle"}]}
    assert service.ready({"ready": True}, 2)
    assert not service.ready({"ready": False, "pollers": 2, "workers": slots}, 2)
    assert service.ready({"pollers": 2, "workers": slots}, 2)  # a service without `ready`
    assert not service.ready({"pollers": 1, "workers": slots}, 2)


def test_not_ready_names_the_import() -> None:
    importing = {"ready": False, "workers": {"slots": []}}
    assert service.not_ready(importing, 2, "app.handler", 60) == (
        "the handler's import (app.handler) had not finished after 60 s: the workers are "
        "forked once it is done")
    starting = {"ready": False, "workers": {"slots": [{"state": "idle"}, {"state": "starting"}]}}
    assert service.not_ready(starting, 2, "app.handler", 60) == (
        "1 of 2 worker(s) were polling for invocations after 60 s")
    assert "did not answer" in service.not_ready({}, 2, "app.handler", 60)


def test_a_taken_port_is_refused_and_none_given_is_any_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(service.ServiceError, match=f"127.0.0.1:{port}: the port is taken"):
            service.take_port("127.0.0.1", port)
    assert service.take_port("127.0.0.1", 0) > 0


def test_an_accelerating_leak_reaches_the_limit_at_its_later_rate() -> None:
    found = estimate(leak.LEAK, 60)
    found.accelerating, found.early_kb_per_invocation, found.late_kb_per_invocation = True, 30, 90
    decided = verdict.decide(found, facts(limit_mb=1024.0))
    assert decided.invocations_to_limit == pytest.approx((1024 * 1024 - 4_096) / 90)
    assert ", accelerating: 90.0 KB per invocation over the later half" in decided.headline(found)
