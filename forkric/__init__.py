"""forkric: a pre-forked, multi-process runtime for AWS Lambda Python handlers."""

from forkric.hooks import post_fork

__version__ = "0.1.0"
__all__ = ["__version__", "post_fork"]
