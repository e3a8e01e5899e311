"""Outbound gRPC channels: deadlines, retries on UNAVAILABLE, round-robin, tracing.

The service config gives every call a default deadline and retries UNAVAILABLE
(the code a restarting or overloaded peer returns) with exponential backoff.
`dns:///` targets with round_robin spread calls over a headless Service's pods.
"""

from __future__ import annotations

import json

import grpc


def service_config(timeout_seconds: float = 2.0, max_attempts: int = 3) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],
                    "timeout": f"{timeout_seconds}s",
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


def open_channel(
    target: str, *, timeout_seconds: float = 2.0, max_attempts: int = 3
) -> grpc.aio.Channel:
    """An insecure channel for in-mesh calls (mTLS belongs to the mesh/sidecar layer)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(timeout_seconds, max_attempts)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
        ],
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
