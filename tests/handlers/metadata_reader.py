"""Reads the Lambda metadata endpoint as Powertools does: GET with the Bearer token, and without.

Returns, for each way of asking, the status, the body and the Cache-Control header.
"""

import http.client
import json
import os

PATH = "/2026-01-15/metadata/execution-environment"


def _get(headers):
    conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_METADATA_API"], timeout=10)
    try:
        conn.request("GET", PATH, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return {"status": response.status, "cache_control": response.getheader("Cache-Control"),
                "body": json.loads(body) if body else None}
    finally:
        conn.close()


def handler(event, context):
    token = os.environ["AWS_LAMBDA_METADATA_TOKEN"]
    return {
        "with_token": _get({"Authorization": f"Bearer {token}"}),
        "without_token": _get({}),
        "wrong_token": _get({"Authorization": "Bearer not-the-token"}),
        "token_without_bearer": _get({"Authorization": token}),
    }
