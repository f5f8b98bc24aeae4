"""The fork-hazard corpus (tests/fork_corpus): one case under one runtime, run by the real RIE in
managed-instances mode with 4 workers (forkric) or 4 processes (awslambdaric), loaded by 4
concurrent clients, every answer checked and counted by kind."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import corpus_deps, rie

CORPUS = rie.REPO / "tests" / "fork_corpus"
WORKERS = 4
CLIENTS = 4
FUNCTION_TIMEOUT_S = 5
MAX_HANGS = 8  # a case that hangs this often has shown it: stop loading it
READY_TIMEOUT_S = 90.0
SIDE_OUTPUT_WAIT_S = 10.0


@dataclass(frozen=True)
class Case:
    name: str  # module in tests/fork_corpus
    servers: tuple[str, ...] = ()  # "http", "echo", "s3", "pg", "redis"
    env: Mapping[str, str] = field(default_factory=dict)
    side_output: str = ""  # a scratch file that must end up holding every token
    distinct: str = ""  # an answer field whose values must never repeat
    needs: str = ""  # "hook" or "mode": named by the report without it, passes with it
    invocations: int = 120
    # The function timeout; in LMI mode the RIE also gives the runtime's init this long, and
    # awslambdaric's 4 processes import a heavy library at once on 2 cores.
    timeout_s: int = FUNCTION_TIMEOUT_S


CASES = (
    Case("requests_session", ("http",)),
    Case("boto3_s3", ("s3",), timeout_s=30),  # 4 boto3 imports at once: a slow init
    Case("psycopg2_conn", ("pg",), needs="mode"),
    Case("psycopg2_tls", ("pg",), {"CORPUS_PG_DSN_VAR": "CORPUS_PG_TLS"}, needs="mode"),
    Case("psycopg2_hook", ("pg",), {"FORKRIC_IMPORT_MODE": "once"}, needs="hook"),
    Case("psycopg3_conn", ("pg",), needs="mode"),
    Case("redis_client", ("redis",)),
    Case("raw_socket", ("echo",), needs="mode"),
    Case("queue_listener", side_output="listener.log"),
    Case("queue_thread", side_output="queue_thread.log", needs="mode"),
    Case("importing_thread", needs="mode"),
    Case("sentry", ("http",), timeout_s=30),  # 4 sentry-sdk imports at once: a slow init
    Case("sklearn_openmp", invocations=60, timeout_s=60),
    Case("torch_model", invocations=60, timeout_s=60),
    Case("thread_pool"),
    Case("process_pool", needs="mode"),
    Case("held_lock", needs="mode"),
    Case("temp_file"),
    Case("generators", distinct="draws"),
    Case("gc_disabled"),
)
BY_NAME = {case.name: case for case in CASES}


@dataclass
class Outcome:
    case: str
    runtime: str
    counts: Counter[str] = field(default_factory=Counter)  # ok, wrong, error, hung
    problems: list[str] = field(default_factory=list)
    log: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and set(self.counts) == {"ok"}

    def brief(self) -> str:
        """Counts only, and the first problem's error type: for tables."""
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        kinds = [re.search(r"'errorType': '([^']+)'", p) for p in self.problems]
        named = [k.group(1) for k in kinds if k]
        checks = [p for p in self.problems if not p.startswith("e.g.")]
        return counts + (f" ({named[0]})" if named else "") + "".join(f"; {c}" for c in checks)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        return f"{counts}{'; ' + '; '.join(self.problems) if self.problems else ''}"


def base_python(version: str = "") -> Path:
    """The runtime's interpreter: Debian's by default, else pyenv's `version` copied where the
    RIE's uid can run it. Raises LookupError when there is no such interpreter."""
    if not version:
        return rie.DEBIAN_PYTHON
    found = rie.readable_python(version)
    if found is None:
        raise LookupError(f"no CPython {version} under pyenv")
    return found


def runtime_version(version: str = "") -> str:
    return version or corpus_deps.python_version()


def python(version: str = "") -> Path:
    base = base_python(version)
    return rie.system_python(corpus_deps.libraries(runtime_version(version)), base)


def module_of(case: Case) -> str:
    return "psycopg2_conn" if case.name == "psycopg2_tls" else case.name


@contextlib.contextmanager
def lmi(case: Case, runtime: str, servers: Mapping[str, str],
        extra_env: Mapping[str, str] | None = None,
        version: str = "") -> Iterator[tuple[rie.Emulator, Path]]:
    """The RIE in LMI mode running `python -m RUNTIME` on the case's handler."""
    root = rie.readable_dir(f"corpus-{case.name}-")
    task, scratch = root / "task", root / "scratch"
    shutil.copytree(CORPUS, task, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    scratch.mkdir()
    scratch.chmod(0o777)
    rie.write_bootstrap(root / "runtime", python(version), runtime,
                        rie.library_path_line(base_python(version)))
    env = rie.base_env(_HANDLER=f"{module_of(case)}.handler", CORPUS_SCRATCH=str(scratch),
                       AWS_LAMBDA_FUNCTION_TIMEOUT=str(case.timeout_s),
                       **servers, **case.env, **(extra_env or {}))
    try:
        with rie.managed_instances(root / "runtime", task, WORKERS, env=env) as emulator:
            yield emulator, scratch
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _classify(reply: rie.Reply | None, token: str) -> tuple[str, Any]:
    if reply is None:
        return "hung", None
    if reply.status != 200 or "x-amz-function-error" in reply.headers:
        body = reply.body[:300].decode("utf-8", "replace")
        return ("hung" if "Timedout" in body or "timed out" in body else "error"), body
    try:
        answer = json.loads(reply.body)
    except ValueError:
        return "error", reply.body[:300]
    if isinstance(answer, dict) and "errorType" in answer:
        timed_out = "Timedout" in str(answer["errorType"])
        return ("hung" if timed_out else "error"), answer
    if not isinstance(answer, dict) or str(answer.get("token")) != token:
        return "wrong", answer
    return "ok", answer


def _invoke(emulator: rie.Emulator, token: str, deadline: float,
            timeout_s: int) -> rie.Reply | None:
    """One invocation; a 400 Runtime.Unavailable (no worker polling this instant) is tried
    again; None when it did not finish in time."""
    while True:
        try:
            reply = emulator.invoke({"token": token}, timeout=timeout_s + 5)
        except OSError:
            return None
        if reply.status != 400 or b"Runtime.Unavailable" not in reply.body:
            return reply
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


def wait_ready(emulator: rie.Emulator, timeout_s: int,
               timeout: float = READY_TIMEOUT_S) -> bool:
    """Until one invocation is accepted (answered in any way): the runtime polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            reply = emulator.invoke({"token": "ready"}, timeout=timeout_s + 5)
            if reply.status != 400 or b"Runtime.Unavailable" not in reply.body:
                return True
        time.sleep(0.05)
    return False


def load(emulator: rie.Emulator, case: Case, outcome: Outcome) -> list[Any]:
    """`case.invocations` invocations from CLIENTS concurrent clients; counts into outcome."""
    tokens = iter(range(case.invocations))
    lock = threading.Lock()
    answers: list[Any] = []
    examples: dict[str, Any] = {}

    def client() -> None:
        while True:
            with lock:
                if outcome.counts["hung"] >= MAX_HANGS:
                    return
                token = next(tokens, None)
            if token is None:
                return
            deadline = time.monotonic() + READY_TIMEOUT_S
            reply = _invoke(emulator, str(token), deadline, case.timeout_s)
            kind, answer = _classify(reply, str(token))
            with lock:
                outcome.counts[kind] += 1
                if kind == "ok":
                    answers.append(answer)
                else:
                    examples.setdefault(kind, answer)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for kind, example in examples.items():
        outcome.problems.append(f"e.g. {kind}: {str(example)[:200]}")
    return answers


def check_side_output(case: Case, scratch: Path, answers: list[Any], outcome: Outcome) -> None:
    if not case.side_output:
        return
    expected = {str(a["token"]) for a in answers}
    path = scratch / case.side_output
    deadline = time.monotonic() + SIDE_OUTPUT_WAIT_S
    seen: set[str] = set()
    while time.monotonic() < deadline:
        if path.exists():
            seen = {line.split()[-1] for line in path.read_text().splitlines() if line.strip()}
            if expected <= seen:
                return
        time.sleep(0.1)
    outcome.problems.append(f"{len(expected - seen)} of {len(expected)} tokens never reached "
                            f"{case.side_output}")


def check_distinct(case: Case, answers: list[Any], outcome: Outcome) -> None:
    if not case.distinct:
        return
    values = list(itertools.chain.from_iterable(a[case.distinct] for a in answers))
    repeats = len(values) - len(set(values))
    if repeats:
        outcome.problems.append(f"{repeats} of {len(values)} random draws repeat another's "
                                f"({len(set(values))} distinct)")


def run_case(case: Case, runtime: str, servers: Mapping[str, str],
             extra_env: Mapping[str, str] | None = None, version: str = "") -> Outcome:
    """Start, load, check, stop: the case's outcome under `runtime` (forkric, awslambdaric)
    on Python `version` (default: Debian's)."""
    outcome = Outcome(case.name, runtime)
    started = time.monotonic()
    with lmi(case, runtime, servers, extra_env, version) as (emulator, scratch):
        if not wait_ready(emulator, case.timeout_s):
            outcome.problems.append("never ready")
            outcome.counts["hung"] += case.invocations
        else:
            answers = load(emulator, case, outcome)
            check_side_output(case, scratch, answers, outcome)
            check_distinct(case, answers, outcome)
        outcome.log = emulator.log()
    outcome.seconds = time.monotonic() - started
    return outcome



@contextlib.contextmanager
def servers_for(cases: list[Case]) -> Iterator[dict[str, str]]:
    """The environment naming every server the cases need, each started once."""
    from tests.support import servers

    wanted = {name for case in cases for name in case.servers}
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if "http" in wanted:
            env["CORPUS_HTTP"] = stack.enter_context(servers.http_echo())
        if "echo" in wanted:
            env["CORPUS_ECHO"] = stack.enter_context(servers.line_echo())
        if "s3" in wanted:
            objects = {f"obj-{i}": f"obj-{i}".encode() for i in range(10)}
            objects["model"] = bytes(range(256)) * 4096
            env["CORPUS_S3"] = stack.enter_context(servers.moto_s3(objects))
        if "redis" in wanted:
            env["CORPUS_REDIS"] = stack.enter_context(servers.redis())
        if "pg" in wanted:
            env["CORPUS_PG"], env["CORPUS_PG_TLS"] = stack.enter_context(servers.postgres())
        yield env
