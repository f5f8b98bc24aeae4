"""A psycopg2 connection opened at import (CORPUS_PG_DSN_VAR names the DSN: with or without TLS)."""

import os

import psycopg2

DSN = os.environ[os.environ.get("CORPUS_PG_DSN_VAR", "CORPUS_PG")]
CONN = psycopg2.connect(DSN)
CONN.autocommit = True


def handler(event, context):
    with CONN.cursor() as cursor:
        cursor.execute("SELECT %s::text, pg_sleep(0.002)", (str(event["token"]),))
        row = cursor.fetchone()
    return {"token": row[0], "pid": os.getpid()}
