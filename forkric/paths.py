"""The AWS Python base image's `sys.path` and site set-up, as its `bootstrap.py` does it."""

from __future__ import annotations

import os
import site
import sys
from collections.abc import MutableMapping


def opt_site_packages() -> str:
    return f"/opt/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


OPT_PYTHON = "/opt/python"


def set_up(environ: MutableMapping[str, str] | None = None) -> str:
    """Put the task root and the layer folders on the path; returns the task root.

    `LAMBDA_TASK_ROOT` defaults to the working directory, so a handler runs locally as it does in
    the image. The `/opt` entries are left out when the user set `PYTHONPATH`, as on Lambda.
    """
    env = os.environ if environ is None else environ
    task_root = env.setdefault("LAMBDA_TASK_ROOT", os.getcwd())
    pythonpath_set = "PYTHONPATH" in env
    if not pythonpath_set:
        sys.path.insert(0, OPT_PYTHON)
        sys.path.insert(0, opt_site_packages())
    sys.path.insert(0, task_root)
    # addsitedir on a folder already on the path only runs its .pth files.
    site.addsitedir(task_root)
    if not pythonpath_set:
        site.addsitedir(opt_site_packages())
        site.addsitedir(OPT_PYTHON)
        runtime_dir = env.get("LAMBDA_RUNTIME_DIR")
        if runtime_dir:
            env["PYTHONPATH"] = runtime_dir
    return task_root
