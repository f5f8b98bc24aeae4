"""The context object handed to a handler, attribute for attribute as awslambdaric builds it."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: Mapping[str, Any] | None) -> None:
        # Only None means "no identity": any other JSON value must be a mapping (as in
        # awslambdaric, `[]` or `0` fails with AttributeError).
        self.cognito_identity_id = None if identity is None else identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = None if identity is None \
            else identity.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}])")


class Client:
    __slots__ = ("app_package_name", "app_title", "app_version_code", "app_version_name",
                 "installation_id")
    app_package_name: Any
    app_title: Any
    app_version_code: Any
    app_version_name: Any
    installation_id: Any

    def __init__(self, client: Mapping[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, client.get(name))

    def __repr__(self) -> str:
        return (f"Client([installation_id={self.installation_id},app_title={self.app_title},"
                f"app_version_name={self.app_version_name},"
                f"app_version_code={self.app_version_code},"
                f"app_package_name={self.app_package_name}])")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.custom = context.get("custom")
        self.env = context.get("env")
        client = context.get("client")
        self.client = None if client is None else Client(client)

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


class LambdaContext:
    """What `context` is inside a handler. The function's settings come from the environment."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str | None = None,
        client_context: dict[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        # Lambda hands W3C trace fields over in the client context; they are read with w3c().
        w3c = client_context.pop("w3c", None) if isinstance(client_context, dict) else None
        self._w3c = {k: v for k, v in w3c.items() if k in W3C_FIELDS and isinstance(v, str)} \
            if isinstance(w3c, dict) else {}
        self.client_context = None if client_context is None else ClientContext(client_context)
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        return dict(self._w3c)

    def log(self, msg: Any) -> None:
        # As awslambdaric: the sink of the first root handler that has one, else stdout; so a
        # handler that replaced the root logger's handlers logs to stdout here too.
        for handler in logging.getLogger().handlers:
            if hasattr(handler, "log_sink"):
                handler.log_sink.log(str(msg))
                return
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id},"
                f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
                f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
                f"function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn},"
                f"client_context={self.client_context},identity={self.identity},"
                f"tenant_id={self.tenant_id}])")
