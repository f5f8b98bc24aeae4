"""tempfile.TemporaryFile() made at import as scratch space."""

import os
import tempfile
import time

SCRATCH = tempfile.TemporaryFile()  # noqa: SIM115  (the hazard under test)
SCRATCH.write(b"header\n")
SCRATCH.flush()


def handler(event, context):
    data = f"{event['token']}\n".encode()
    SCRATCH.seek(7)
    SCRATCH.truncate()
    SCRATCH.write(data)
    SCRATCH.flush()
    time.sleep(0.002)
    SCRATCH.seek(7)
    return {"token": SCRATCH.read().decode().strip(), "pid": os.getpid()}
