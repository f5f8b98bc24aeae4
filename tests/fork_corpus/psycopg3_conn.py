"""A psycopg (3) connection opened at import."""

import os

import psycopg

CONN = psycopg.connect(os.environ["CORPUS_PG"], autocommit=True)


def handler(event, context):
    row = CONN.execute("SELECT %s::text", (str(event["token"]),)).fetchone()
    return {"token": row[0], "pid": os.getpid()}
