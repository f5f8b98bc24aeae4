"""A raw socket opened at import to a line echo server, one line per invocation."""

import os
import socket

HOST, PORT = os.environ["CORPUS_ECHO"].split(":")
SOCK = socket.create_connection((HOST, int(PORT)), timeout=5)
READER = SOCK.makefile("rb")


def handler(event, context):
    SOCK.sendall(f"{event['token']}\n".encode())
    line = READER.readline()
    if not line:
        raise ConnectionError("the echo connection is closed")
    return {"token": line.decode().strip(), "pid": os.getpid()}
