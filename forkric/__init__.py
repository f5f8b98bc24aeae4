"""forkric: a pre-forked, multi-process runtime for AWS Lambda Python handlers."""

import os
import sys

if sys.argv[:1] == ["-m"] and sys.path and not getattr(sys.flags, "safe_path", False) \
        and os.path.realpath(sys.path[0] or os.curdir) == os.path.realpath(os.curdir):
    # `python -m forkric`, being located (argv[0] is "-m" until it runs): Python put the working
    # directory first on sys.path, and on Lambda that is the task root, whose `random.py` or
    # vendored `httptools` would then stand in for what forkric imports. The entry goes before
    # anything else is imported (os and sys were loaded with the interpreter); paths.set_up puts
    # the task root back where the base image has it once forkric's own imports are done, as
    # the base image does for awslambdaric.
    del sys.path[0]

from forkric.hooks import post_fork
from forkric.streaming import StreamingResponse, response_stream

__version__ = "0.1.0"
__all__ = ["StreamingResponse", "__version__", "post_fork", "response_stream"]
