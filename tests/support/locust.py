"""Locust's web UI as a test peer: started on a free loopback port, its page's options read."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.rie import base_env, free_port, wait_port


def web_ui_options(argv: list[str], cwd: Path, web_port_args: list[str] | None = None,
                   ) -> dict[str, Any]:
    """Run `argv` (a Locust command with its web UI) with `--web-port` (given after
    `web_port_args`, e.g. `["--"]` for `forkric load`), read the options its page carries,
    stop it."""
    port = free_port()
    web = subprocess.Popen([*argv, *(web_port_args or []), "--web-port", str(port)], cwd=cwd,
                           env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        wait_port(port, timeout=60, process=web)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        page = conn.getresponse().read().decode()
        conn.close()
    finally:
        web.terminate()
        web.wait(30)
    found = json.loads(page.split("window.templateArgs = ", 1)[1].split("\n", 1)[0])
    assert isinstance(found, dict)
    return found
