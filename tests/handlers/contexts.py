"""Everything a handler can see of its context and environment, as JSON."""

from __future__ import annotations

import os
from typing import Any

ENV = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
       "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "_HANDLER", "LAMBDA_TASK_ROOT",
       "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV", "_LAMBDA_TELEMETRY_LOG_FD", "AWS_REGION")


def _public(obj: Any) -> dict[str, Any]:
    # Sorted: the order of __slots__ differs (ClientContext, Client), a reported nit.
    names = getattr(type(obj), "__slots__", None) or [n for n in vars(obj) if not n.startswith("_")]
    return {n: repr(getattr(obj, n, "<missing>")) for n in sorted(names)}


def handler(event: Any, context: Any) -> Any:
    remaining = context.get_remaining_time_in_millis()
    client_context = context.client_context
    return {
        "type": type(context).__name__,
        "attributes": sorted(n for n in dir(context) if not n.startswith("_")),
        "aws_request_id_is_str": isinstance(context.aws_request_id, str),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "memory_limit_type": type(context.memory_limit_in_mb).__name__,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "tenant_id": context.tenant_id,
        "identity_type": type(context.identity).__name__,
        "identity": _public(context.identity),
        "identity_repr": repr(context.identity),
        "client_context_type": type(client_context).__name__,
        "client_context": None if client_context is None else _public(client_context),
        "client_type": type(getattr(client_context, "client", None)).__name__,
        "w3c": context.w3c() if hasattr(context, "w3c") else "<no w3c>",
        "repr_head": repr(context).split("aws_request_id=")[0],
        "repr_tail": repr(context).split(",", 1)[1],
        "remaining_positive": remaining > 0,
        "remaining_type": type(remaining).__name__,
        "remaining_at_most_timeout": remaining <= 300_000,
        "env": {name: os.environ.get(name) for name in ENV},
        "event": event,
    }
