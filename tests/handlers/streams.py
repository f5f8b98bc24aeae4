"""sys.stdout and sys.stderr as a handler uses them: as context managers, and what write returns.

The handler returns what it saw, and writes a line through each way it tried.
"""

import sys


def handler(event, context):
    seen = {}
    with sys.stdout as out:
        seen["with_stdout_is_stdout"] = out is sys.stdout
        seen["stdout_write_returned"] = repr(out.write("written inside with sys.stdout\n"))
    with sys.stderr as err:
        seen["stderr_write_returned"] = repr(err.write("written inside with sys.stderr\n"))
    seen["writelines_returned"] = repr(sys.stdout.writelines(["one\n", "two\n"]))
    seen["print_after_with"] = repr(print("still open after the with block"))
    seen["closed"] = sys.stdout.closed
    return seen
