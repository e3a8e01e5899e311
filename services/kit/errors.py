"""Known failures as exceptions that map to a gRPC code plus google.rpc.Status details.

Servicers raise these; the server interceptor turns them into
`context.abort(code, message, trailing_metadata=grpc-status-details-bin)`, so a
known failure never surfaces as UNKNOWN and never leaks a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "socialmesh.dev"


class ServiceError(Exception):
    """A failure the API promises, with the gRPC code clients should see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason

    def details(self) -> list[object]:
        return [
            error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN),
        ]

    def status_proto(self) -> status_pb2.Status:
        """As a google.rpc.Status (also what stream acks carry)."""
        packed = []
        for detail in self.details():
            holder = any_pb2.Any()
            holder.Pack(detail)  # type: ignore[arg-type]
            packed.append(holder)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self.status_proto())


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{f}: {d}" for f, d in self.violations)
        super().__init__(f"invalid request: {summary}")

    def details(self) -> list[object]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
        ]


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> list[object]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN)
        if self.field:
            info.metadata["field"] = self.field
        return [info]


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, subject: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.subject = subject
        self.retry_after_seconds = retry_after_seconds

    def details(self) -> list[object]:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(0, int(self.retry_after_seconds * 1000)))
        return [
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=self.subject, description=self.message
                    )
                ]
            ),
            error_details_pb2.RetryInfo(retry_delay=delay),
        ]
