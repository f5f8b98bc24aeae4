"""Locust load test for any Lambda Invoke API (`forkric local`, the AWS RIE, a real endpoint).

The users live in `forkric/soak/locustfile.py` (Locust and the standard library only), which
`forkric soak` runs too; this file is the one to point Locust at from the repository:

    python -m forkric local loadtest.handlers.heavy.handler --workers 2 --port 9000 &
    locust -f loadtest/locustfile.py --host http://127.0.0.1:9000 \
        --event @loadtest/events/heavy.json
        # --headless -u 8 -r 8 -t 30s for no web UI; --master / --worker for distributed mode

Function errors (`X-Amz-Function-Error`, or the RIE's 502 for a dead runtime) are failures named
`function error: <errorType>`, apart from `invoke`, whose failures are the service's or the
network's (429, 5xx, refused connections, timeouts).
"""

from forkric.soak.locustfile import (
    FUNCTION_ERROR_PREFIX,
    INVOKE_NAME,
    InvokeUser,
    add_arguments,
    classify,
    event_bytes,
)

__all__ = ["FUNCTION_ERROR_PREFIX", "INVOKE_NAME", "InvokeUser", "add_arguments", "classify",
           "event_bytes"]
