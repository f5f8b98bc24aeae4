"""A redis-py client that pinged at import (redis-py checks its pid: expected to pass as is)."""

import os

import redis

HOST, PORT = os.environ["CORPUS_REDIS"].split(":")
CLIENT = redis.Redis(host=HOST, port=int(PORT), socket_timeout=5)
CLIENT.ping()


def handler(event, context):
    key = f"corpus:{event['token']}"
    CLIENT.set(key, str(event["token"]), ex=60)
    return {"token": CLIENT.get(key).decode(), "pid": os.getpid()}
