"""Server interceptor: authentication, error mapping and trace-id'd logging.

Wraps every handler so that (1) the bearer token is verified here too, not only
at the edge, (2) `ServiceError`s become rich google.rpc.Status aborts, (3) an
unexpected exception is logged with its trace id and returns INTERNAL without
internals, and (4) the call runs in its trace context (`telemetry.ServerSpan`:
the caller's traceparent or a new trace; a recorded span only when sampled and
exported).

Who may call a method is its `(socialmesh.api.v1.access)` option in the contract:

| method access (contract) | no token | user token | service credential |
|---|---|---|---|
| PUBLIC | anonymous | the user | PERMISSION_DENIED |
| UNSPECIFIED (signed in) | UNAUTHENTICATED | the user | PERMISSION_DENIED |
| INTERNAL | UNAUTHENTICATED | the user | the service |

A bad, expired or revoked token is UNAUTHENTICATED everywhere, even on PUBLIC
methods. A *valid* service credential on a non-internal method is
PERMISSION_DENIED: the caller is known, it just may not do this (AIP-193).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from redis import exceptions as redis_exceptions

from .auth import (
    INTERNAL,
    PUBLIC,
    SIGNED_IN,
    CallerVerifier,
    MethodAccess,
    Revocations,
    bearer_token,
    reset_caller,
    set_caller,
)
from .errors import (
    InvalidArgument,
    PermissionDenied,
    Reason,
    ServiceError,
    Unauthenticated,
    Unavailable,
    request_id_from,
    reset_request_id,
    set_request_id,
)
from .idempotency import apply_idempotency_key
from .metrics import RPC_HANDLED, RPC_SECONDS, method_name
from .telemetry import ServerSpan
from .validation import bad_utf8_field, request_violations

log = logging.getLogger("socialmesh.rpc")

#: Exceptions that mean PostgreSQL or Redis is unreachable right now.
DEPENDENCY_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
)

#: Methods anyone may call without a token (health and reflection).
ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else "-"


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates callers and maps failures for every RPC of a service."""

    def __init__(
        self,
        verifier: CallerVerifier,
        access: Mapping[str, MethodAccess],
        revocations: Callable[[], Revocations | None] = lambda: None,
        service: str = "",
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._revocations = revocations
        #: gRPC path -> access level; a method missing here needs a signed-in user.
        self._access = dict(access)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        access = self._access.get(method, SIGNED_IN)
        deserializer = _lenient(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, access),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, access),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, access),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, access),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _authenticate(self, context: grpc.aio.ServicerContext, access: MethodAccess) -> None:
        token = bearer_token(context.invocation_metadata())  # type: ignore[arg-type]
        if token is None:
            if access != PUBLIC:
                raise Unauthenticated(
                    "this call needs a bearer access token", reason=Reason.TOKEN_MISSING
                )
            set_caller(None)
            return
        caller = self._verifier.verify(token)  # a bad token is refused even when public
        if caller.is_service:
            if access != INTERNAL:
                raise PermissionDenied(
                    "service credentials may call internal methods only",
                    reason=Reason.USER_CALLERS_ONLY,
                )
        else:
            revocations = self._revocations()
            revoked = None if revocations is None else await revocations.revoked_reason(caller)
            if revoked == Reason.TOKEN_REVOKED:
                raise Unauthenticated("access token revoked (account deleted)", reason=revoked)
            if revoked is not None:
                raise Unauthenticated(
                    "the session ended (signed out or revoked): sign in again", reason=revoked
                )
        set_caller(caller)

    def _wrap_unary(self, behavior: Any, method: str, access: MethodAccess) -> Any:
        name = method_name(method)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller_token = set_caller(None)
            request_token = set_request_id(request_id_from(context.invocation_metadata()))
            started, code = time.perf_counter(), grpc.StatusCode.OK
            span, error = ServerSpan(method, context.invocation_metadata()), None
            try:
                await self._authenticate(context, access)
                _check_request(request)
                if isinstance(request, Message):
                    apply_idempotency_key(request, context.invocation_metadata())
                return await behavior(request, context)
            except Exception as exc:
                code, error = _code_for(exc, context), exc
                await _abort_for(exc, context, method)
            finally:
                reset_caller(caller_token)
                reset_request_id(request_token)
                span.end(code, error)
                self._record(name, code, started)

        return wrapper

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        RPC_HANDLED.labels(self._service, method, code.name).inc()
        RPC_SECONDS.labels(self._service, method).observe(time.perf_counter() - started)

    def _wrap_stream(self, behavior: Any, method: str, access: MethodAccess) -> Any:
        name = method_name(method)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            caller_token = set_caller(None)
            request_token = set_request_id(request_id_from(context.invocation_metadata()))
            started, code = time.perf_counter(), grpc.StatusCode.OK
            span, error = ServerSpan(method, context.invocation_metadata()), None
            try:
                await self._authenticate(context, access)
                if not isinstance(request, AsyncIterator):
                    _check_request(request)
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away
                raise
            except Exception as exc:
                code, error = _code_for(exc, context), exc
                await _abort_for(exc, context, method)
            finally:
                reset_caller(caller_token)
                reset_request_id(request_token)
                span.end(code, error)
                self._record(name, code, started)

        return wrapper


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request grpcio could not parse, so the wrapper can refuse it.

    grpcio deserializes before any interceptor code runs and turns a DecodeError into
    UNKNOWN with the Python class and protobuf type in the message; the lenient
    deserializer hands this over instead and the wrapper answers INVALID_ARGUMENT.
    """

    field: str
    description: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            bad = bad_utf8_field(descriptor, data) if descriptor is not None else None
            if bad:
                return _Undecodable(bad, "must be valid UTF-8")
            return _Undecodable("request", "not a well-formed protobuf message")

    return deserialize


def _check_request(request: Any) -> None:
    """Kit-wide bounds on every request (NUL, string length, list size), naming the field."""
    if isinstance(request, _Undecodable):
        raise InvalidArgument([(request.field, request.description)])
    if isinstance(request, Message):
        problems = request_violations(request)
        if problems:
            raise InvalidArgument(problems)


def _code_for(exc: Exception, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status `_abort_for` will end the call with (for metrics)."""
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncpg.DataError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, DEPENDENCY_OUTAGES):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


async def _abort_for(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> None:
    """Re-raises aborts/cancellations; turns everything else into a clean status."""
    if isinstance(exc, grpc.aio.AbortError | grpc.aio.UsageError):
        raise exc
    if isinstance(exc, asyncpg.DataError):
        # Input PostgreSQL refused (NUL, bad encoding, out of range) that validation
        # missed: the caller's fault, so 400 without internals, logged in one line.
        log.warning("database refused input in %s: %s", method, type(exc).__name__)
        exc = InvalidArgument([("request", "contains a value that cannot be stored")])
    if isinstance(exc, ServiceError):
        await _abort_with(exc, context)
    tid = trace_id()
    if isinstance(exc, DEPENDENCY_OUTAGES):
        # A database or cache outage is a known, retryable failure: 503, not 500.
        log.warning("dependency unavailable in %s (trace_id=%s): %r", method, tid, exc)
        outage = Unavailable(
            f"a dependency is unavailable, retry shortly (trace id {tid})",
            metadata={"traceId": tid},
        )
        await _abort_with(outage, context)
    log.exception("unhandled error in %s (trace_id=%s)", method, tid, exc_info=exc)
    # Still the one error shape: an ErrorInfo (INTERNAL) with the trace and request ids.
    await _abort_with(
        ServiceError(f"internal error (trace id {tid})", metadata={"traceId": tid}), context
    )


async def _abort_with(error: ServiceError, context: grpc.aio.ServicerContext) -> None:
    """Ends the call with the error's rich status, its headers (e.g. `retry-after`)
    riding in the trailers, which a trailers-only answer sends as the response headers
    (the edge turns them into HTTP headers)."""
    status = error.to_status()
    trailing = (*status.trailing_metadata, *error.headers())
    await context.abort(status.code, status.details, trailing_metadata=trailing)
