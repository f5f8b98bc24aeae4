"""The fork-hazard corpus (tests/fork_corpus) under the real RIE in managed-instances mode: each
handler's import leaves one hazard (a connection, a thread, a generator, ...) on a real library
against a real server; forkric with 4 workers must answer every invocation of a concurrent load as
awslambdaric's 4 processes do. Cases that need the hook or the import-per-worker mode are also
run with `FORKRIC_IMPORT_MODE=once`: the start-up report must name what makes them unsafe.

make test runs every case under forkric and a representative few under awslambdaric (the peer
takes 4 imports per start); FORKRIC_CORPUS_FULL=1 runs the peer on all, as
`python -m loadtest.fork_corpus` does for the README's table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from tests.support import corpus, corpus_deps, rie, servers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LMI mode needs root (unshare -m)")

FULL = os.environ.get("FORKRIC_CORPUS_FULL") == "1"
PEER_SAMPLE = ("requests_session", "psycopg2_conn", "queue_thread", "generators")
# Managed Instances run Python 3.13 and later, where CPython warns when a process with threads
# forks. make test runs these there (the threads, imports, sockets and generators cases); the
# whole grid: python -m loadtest.fork_corpus --python 3.13.
NEWER_PYTHON = "3.13"
NEWER_SAMPLE = ("requests_session", "psycopg2_tls", "queue_listener", "queue_thread",
                "importing_thread", "thread_pool", "held_lock", "temp_file",
                "generators", "gc_disabled")
# What the report says about each case that the repairs cannot make safe by themselves.
NAMED_BY = {
    "psycopg2_conn": "TCP connection to 127.0.0.1:",
    "psycopg2_tls": "TCP connection to 127.0.0.1:",
    "psycopg3_conn": "TCP connection to 127.0.0.1:",
    "raw_socket": "TCP connection to 127.0.0.1:",
    "queue_thread": "thread 'flusher' (target queue_thread.consume)",
    "importing_thread": "thread 'sdk-worker' (target importing_thread.background)",
    "process_pool": "(target multiprocessing.pool.Pool._handle_workers)",
    "held_lock": "thread 'holder' (target held_lock.hold)",
}


def _missing(case: corpus.Case, version: str = "") -> str:
    if "pg" in case.servers and servers.postgres_bin() is None:
        return "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
    if "redis" in case.servers and servers.redis_binary() is None:
        return "redis-server is not installed (.ci/run installs Debian's redis-server)"
    if version and rie.readable_python(version) is None:
        return f"no CPython {version} under pyenv to run the runtime with"
    runtime = corpus.runtime_version(version)
    if case.name == "torch_model" and corpus_deps.TORCH not in corpus_deps.libraries(runtime):
        return (f"PyTorch's CPU build is at hand for Python {corpus_deps.TORCH_PYTHON} only; the "
                f"runtime's Python is {runtime}")
    return ""


@pytest.fixture(scope="module")
def server_env() -> Iterator[dict[str, str]]:
    runnable = [case for case in corpus.CASES if not _missing(case)]
    with corpus.servers_for(runnable) as env:
        yield env


def _case(name: str, version: str = "") -> corpus.Case:
    case = corpus.BY_NAME[name]
    reason = _missing(case, version)
    if reason:
        pytest.skip(reason)
    return case


@pytest.mark.parametrize("name", [case.name for case in corpus.CASES])
def test_forkric_answers_every_invocation_as_a_process_that_imported_alone(
        name: str, server_env: dict[str, str]) -> None:
    outcome = corpus.run_case(_case(name), "forkric", server_env)
    print(f"{name} forkric: {outcome.summary()} ({outcome.seconds:.1f} s)")
    assert outcome.passed, f"{outcome.summary()}\n{outcome.log[-3000:]}"
    # Memory stays shared wherever the repairs make the fork invisible to the handler.
    per_worker = "each worker imports the handler itself" in outcome.log
    assert per_worker == (name in NAMED_BY), outcome.log[-3000:]


@pytest.mark.parametrize("name", sorted(NAMED_BY))
def test_the_report_names_what_needs_the_hook_or_the_mode(
        name: str, server_env: dict[str, str]) -> None:
    case = dataclasses.replace(_case(name), invocations=8)
    outcome = corpus.run_case(case, "forkric", server_env, {"FORKRIC_IMPORT_MODE": "once"})
    report = [line for line in outcome.log.splitlines() if "forkric: fork safety:" in line]
    assert any(NAMED_BY[name] in line for line in report), report
    assert any("@post_fork" in line and "FORKRIC_IMPORT_MODE=per-worker" in line
               for line in report), report
    if "TCP connection" in NAMED_BY[name]:  # shut down: an error, never another's answer
        assert outcome.counts["wrong"] == 0, outcome.summary()


@pytest.mark.parametrize("name", [case.name for case in corpus.CASES
                                  if FULL or case.name in PEER_SAMPLE])
def test_awslambdaric_answers_every_invocation(name: str, server_env: dict[str, str]) -> None:
    """The peer: 4 processes that each imported the handler. What forkric is held to."""
    outcome = corpus.run_case(_case(name), "awslambdaric", server_env)
    print(f"{name} awslambdaric: {outcome.summary()} ({outcome.seconds:.1f} s)")
    assert outcome.passed, f"{outcome.summary()}\n{outcome.log[-3000:]}"


@pytest.mark.parametrize("name", [case.name for case in corpus.CASES
                                  if FULL or case.name in NEWER_SAMPLE])
def test_forkric_on_python_3_13(name: str, server_env: dict[str, str]) -> None:
    outcome = corpus.run_case(_case(name, NEWER_PYTHON), "forkric", server_env,
                              version=NEWER_PYTHON)
    print(f"{name} forkric on {NEWER_PYTHON}: {outcome.summary()} ({outcome.seconds:.1f} s)")
    assert outcome.passed, f"{outcome.summary()}\n{outcome.log[-3000:]}"
