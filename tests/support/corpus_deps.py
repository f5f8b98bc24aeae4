"""The libraries the fork-hazard corpus's handlers use, installed into the runtime's venv under
Debian's Python (see rie.system_python). PyTorch only where its CPU build is at hand: a pinned
`torch==2.13.0` for CPython 3.11 (never pulled in by another requirement: a generic resolve would
fetch a multi-GB CUDA build)."""

from __future__ import annotations

import subprocess

LIBRARIES = (
    "requests>=2.31",
    "boto3>=1.34",
    "psycopg2-binary>=2.9",
    "psycopg[binary]>=3.1",
    "redis>=5",
    "async-timeout>=4",  # redis asks for it below Python 3.11.3 (Debian 12 has 3.11.2)
    "sentry-sdk>=2",
    "numpy>=1.26",
    "scikit-learn>=1.3",
    "threadpoolctl>=3",
)
TORCH = "torch==2.13.0"
TORCH_PYTHON = "3.11"


def python_version(python: str = "/usr/bin/python3") -> str:
    return subprocess.run([python, "-c",
                           "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def libraries(version: str) -> tuple[str, ...]:
    """What the corpus installs for a runtime of Python `version` ("3.11")."""
    return LIBRARIES + ((TORCH,) if version == TORCH_PYTHON else ())
