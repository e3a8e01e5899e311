"""Outbound gRPC channels: credentials, deadlines, retries on UNAVAILABLE, round-robin.

Every call gets a default deadline and credentials from one client interceptor
(`OutboundCall`: the user's own token, or this service's credential for
internal methods), and the service config retries UNAVAILABLE (the code a
restarting or overloaded peer returns) with exponential backoff. `dns:///`
targets with round_robin spread calls over a headless Service's pods. The
deadline is deliberately *not* the service config's `timeout`: grpcio applies
that one too early under load (grpc/grpc#40633, #34547: DEADLINE_EXCEEDED after
~30 ms of a 2 s budget, seen here too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from . import telemetry
from .auth import INTERNAL, forwarded_auth, method_access
from .errors import ServiceError, Unavailable, retry_after_header, stamp


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


class OutboundCall(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Gives every outbound call a deadline and credentials, in one interceptor.

    * Deadline: `timeout_seconds` unless the caller chose one.
    * Credentials, when the call carries no `authorization` metadata:
      - during a signed-in user's request, the user's own token (the callee
        verifies it again and applies its own rules);
      - otherwise (anonymous requests, service callers, background workers),
        this service's credential, but only to METHOD_ACCESS_INTERNAL methods;
        any other call stays anonymous, exactly as the request was.

    * Trace context: the current `traceparent` (telemetry.py); a CLIENT span
      around unary calls only when the trace is recorded.

    One interceptor rather than two: each grpc.aio interceptor layer costs a
    task and a call wrapper on every outbound call of the hot paths.
    """

    def __init__(
        self, timeout_seconds: float, service_token: Callable[[], str] | None = None
    ) -> None:
        self._timeout = timeout_seconds
        self._service_token = service_token

    def _bearer(self, method: str) -> str | None:
        forwarded = forwarded_auth()
        if forwarded:
            return forwarded[0][1]
        if self._service_token is not None and method_access(method) == INTERNAL:
            return f"Bearer {self._service_token()}"
        return None

    def _rewrite(
        self, details: grpc.aio.ClientCallDetails, span: Any = None
    ) -> grpc.aio.ClientCallDetails:
        timeout = self._timeout if details.timeout is None else details.timeout
        metadata = details.metadata or grpc.aio.Metadata()
        added = telemetry.traceparent_headers(span)  # the trace goes on with the call
        if "authorization" not in metadata:
            bearer = self._bearer(_method(details))
            if bearer is not None:
                added.append(("authorization", bearer))
        if added:
            metadata = grpc.aio.Metadata(*metadata, *added)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        span = telemetry.client_span(_method(client_call_details))
        if span is None:  # the common case: nothing records this trace
            return await continuation(self._rewrite(client_call_details), request)
        code = grpc.StatusCode.UNKNOWN
        try:
            call = await continuation(self._rewrite(client_call_details, span), request)
            code = await call.code()
            return call
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        finally:
            telemetry.end_client_span(span, code)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._rewrite(client_call_details), request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._rewrite(client_call_details), request_iterator)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._rewrite(client_call_details), request_iterator)


def _method(details: grpc.aio.ClientCallDetails) -> str:
    raw = details.method
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def open_channel(
    target: str,
    *,
    timeout_seconds: float = 3.0,
    max_attempts: int = 3,
    service_token: Callable[[], str] | None = None,
) -> grpc.aio.Channel:
    """An insecure channel for in-mesh calls (mTLS belongs to the mesh/sidecar layer)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(max_attempts)),
            ("grpc.enable_retries", 1),
            # Keepalive on the edge's cadence (Envoy: every 30 s, 5 s to answer), idle
            # connections included; the servers accept it (server.py,
            # MIN_PING_INTERVAL_WITHOUT_DATA_MS), so a dead peer is noticed between calls.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # By default grpc stops pinging after 2 pings without data: a quiet stream
            # would be unguarded after a minute.
            ("grpc.http2.max_pings_without_data", 0),
        ],
        interceptors=[OutboundCall(timeout_seconds, service_token)],  # type: ignore[list-item]
    )


#: The peer is down, overloaded, restarting or too slow: retryable, so 503.
_TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
#: Answers about the resource or the user, true for our caller too: passed on as they are.
_PASS_THROUGH = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class PeerRefusal(ServiceError):
    """A peer's answer passed on unchanged: its code, message and rich details."""

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        super().__init__(exc.details() or exc.code().name.lower(), reason=exc.code().name)
        self.code = exc.code()
        try:
            self._status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        except ValueError:  # details that disagree with the code: keep ours
            self._status = None

    def to_status(self) -> grpc.Status:
        if self._status is not None:
            # The peer's reason and details stay; the request id becomes our caller's.
            return rpc_status.to_status(stamp(self._status))
        return super().to_status()

    def headers(self) -> tuple[tuple[str, str], ...]:
        """A peer's rate limit keeps its `retry-after` header (from its RetryInfo)."""
        for holder in self._status.details if self._status is not None else ():
            if holder.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                holder.Unpack(retry)
                return (
                    (
                        "retry-after",
                        retry_after_header(retry.retry_delay.ToTimedelta().total_seconds()),
                    ),
                )
        return ()


class PeerMisuse(RuntimeError):
    """We sent a peer a request it could not serve: our bug (or its), so INTERNAL.

    Deliberately not a ServiceError: the server interceptor logs it with the
    trace id and returns a bare INTERNAL, so the peer's field names never reach
    our caller as if they were theirs.
    """


def upstream_error(exc: grpc.aio.AioRpcError, upstream: str) -> Exception:
    """Maps a failed call to a peer to what our own caller should see.

    * UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED (the peer or the transport
      failed) -> UNAVAILABLE: a 503 the caller may retry.
    * NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, ALREADY_EXISTS,
      ABORTED, RESOURCE_EXHAUSTED (facts about the resource or the user, as
      true for our caller) -> the same code, message and rich details
      (RetryInfo of a rate limit included).
    * UNAUTHENTICATED while we forwarded the user's own token (e.g. revoked
      in between) -> UNAUTHENTICATED; with our service credential or no token
      -> INTERNAL (our keys or configuration are wrong).
    * INVALID_ARGUMENT, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNKNOWN,
      DATA_LOSS -> INTERNAL.

    A peer's client error means *our* request to it was wrong: the caller cannot
    fix that by retrying or by changing their request, so it is a 500 with the
    peer's answer in our log, never a retryable 503.
    """
    code = exc.code()
    if code in _TRANSIENT:
        return Unavailable(f"{upstream} service unavailable ({code.name})")
    if code in _PASS_THROUGH:
        return PeerRefusal(exc)
    if code == grpc.StatusCode.UNAUTHENTICATED and forwarded_auth():
        return PeerRefusal(exc)
    return PeerMisuse(f"{upstream} service answered {code.name}: {exc.details()}")


class peer_call:  # used as `async with peer_call("graph"):`, like a statement
    """The one way to call a peer: a failed call becomes what our caller should see.

        async with peer_call("graph"):
            reply = await graph.GetRelationship(request)

    replaces the `try: ... except grpc.aio.AioRpcError as exc: raise
    upstream_error(exc, "graph") from exc` each call site used to repeat. Works
    as a plain `with` too, around code that awaits several peers.
    """

    __slots__ = ("_upstream",)

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            raise upstream_error(exc, self._upstream) from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.__exit__(kind, exc, tb)
