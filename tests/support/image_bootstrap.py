"""awslambdaric started as the AWS Python base image starts it, for tests that depend on when the
task root goes on sys.path.

The image runs /var/runtime/bootstrap.py as a script: awslambdaric is imported first, then the
task root and the layer folders go on the path, then the loop starts. `python -m awslambdaric`
would instead have the working directory (the task root) first on the path from the start, so
that a function's `json.py` would stand in for awslambdaric's own imports, which never happens
on Lambda. Run it as `python image_bootstrap.py` from a folder of its own, with `_HANDLER` and
`LAMBDA_TASK_ROOT` set.
"""

import os
import site
import sys

from awslambdaric import __main__ as awslambdaric_main


def set_up_path() -> None:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if "PYTHONPATH" not in os.environ:
        sys.path.insert(0, "/opt/python")
        sys.path.insert(0, f"/opt/python/lib/python{version}/site-packages")
    sys.path.insert(0, task_root)
    site.addsitedir(task_root)


if __name__ == "__main__":
    set_up_path()
    awslambdaric_main.main([sys.argv[0], os.environ["_HANDLER"]])
