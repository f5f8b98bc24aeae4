"""Fork-safety scenarios run in a fresh interpreter: the scenario's set-up plays the handler's
import, `prepare` runs as the supervisor runs it, then a forked child runs `start_worker` as a
worker does and reports what it sees as JSON. A subprocess per scenario, because `prepare` shuts
down every TCP connection of the process it runs in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PRELUDE = '''
import json, os, sys
from forkric import postfork, prefork

def forked(check, inherited, handler=None, repeat=1):
    """Run check() in `repeat` forked workers after start_worker; their results, in order."""
    results = []
    for _ in range(repeat):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read)
                try:
                    postfork.start_worker(inherited, handler)
                    out = json.dumps({"ok": check()})
                except BaseException as exc:
                    out = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
                os.write(write, out.encode())
            finally:
                os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        results.append(json.loads(b"".join(chunks) or b'{"error": "no answer"}'))
    return results

def emit(value):
    print("RESULT " + json.dumps(value), flush=True)
'''


def run(script: str, cwd: Path | None = None, timeout: float = 60.0,
        env: dict[str, str] | None = None) -> Any:
    """Run PRELUDE + script; returns what it passed to emit(), with its stderr on failure."""
    code = PRELUDE + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"scenario printed no result (exit {done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
