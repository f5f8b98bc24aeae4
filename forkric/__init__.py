"""forkric: a pre-forked, multi-process runtime for AWS Lambda Python handlers."""

__version__ = "0.1.0"
