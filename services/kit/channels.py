"""Outbound gRPC channels: deadlines, retries on UNAVAILABLE, round-robin, tracing.

Every call gets a default deadline from a client interceptor, and the service
config retries UNAVAILABLE (the code a restarting or overloaded peer returns)
with exponential backoff. `dns:///` targets with round_robin spread calls over a
headless Service's pods. The deadline is deliberately *not* the service config's
`timeout`: grpcio applies that one too early under load (grpc/grpc#40633,
#34547: DEADLINE_EXCEEDED after ~30 ms of a 2 s budget, seen here too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc


def service_config(max_attempts: int = 3) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


class DefaultDeadline(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
):
    """Gives every outbound call a deadline unless the caller chose one."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds

    def _with_deadline(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if details.timeout is not None:
            return details
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=self._timeout,
            metadata=details.metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_deadline(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_deadline(client_call_details), request)


def open_channel(
    target: str, *, timeout_seconds: float = 3.0, max_attempts: int = 3
) -> grpc.aio.Channel:
    """An insecure channel for in-mesh calls (mTLS belongs to the mesh/sidecar layer)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(max_attempts)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
        ],
        interceptors=[DefaultDeadline(timeout_seconds)],  # type: ignore[list-item]
    )


def upstream_error(exc: grpc.aio.AioRpcError, upstream: str) -> Exception:
    """Maps a failed downstream call to what our own caller should see.

    NOT_FOUND / INVALID_ARGUMENT / PERMISSION_DENIED keep their meaning; an
    unreachable or failing peer becomes UNAVAILABLE (retryable), never UNKNOWN.
    """
    from .errors import NotFound, PermissionDenied, Unavailable

    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(exc.details() or "not found")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(exc.details() or "permission denied")
    return Unavailable(f"{upstream} service unavailable ({code.name})")
