"""A requests.Session that made one GET at import, reused per invocation (keep-alive server)."""

import os

import requests

BASE = f"http://{os.environ['CORPUS_HTTP']}"
SESSION = requests.Session()
SESSION.get(f"{BASE}/echo/warm", timeout=5).raise_for_status()


def handler(event, context):
    reply = SESSION.get(f"{BASE}/echo/{event['token']}", timeout=5)
    return {"token": reply.text, "pid": os.getpid()}
