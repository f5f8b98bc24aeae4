"""psycopg2_conn with the post_fork hook: each worker replaces (never closes) the connection."""

import os

import psycopg2

from forkric import post_fork

DSN = os.environ[os.environ.get("CORPUS_PG_DSN_VAR", "CORPUS_PG")]


def connect():
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    return conn


CONN = connect()


@post_fork
def reconnect():
    global CONN
    CONN = connect()


def handler(event, context):
    with CONN.cursor() as cursor:
        cursor.execute("SELECT %s::text", (str(event["token"]),))
        row = cursor.fetchone()
    return {"token": row[0], "pid": os.getpid()}
