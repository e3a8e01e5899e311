"""Known failures as exceptions that map to a gRPC code plus google.rpc.Status details.

Servicers raise these; the server interceptor turns them into
`context.abort(code, message, trailing_metadata=grpc-status-details-bin)`, so a
known failure never surfaces as UNKNOWN and never leaks a stack trace.

Every status a service returns carries an `ErrorInfo` (AIP-193) with a specific
`reason` from `Reason` below, the one domain `ERROR_DOMAIN`, and metadata in
lowerCamelCase: always `requestId` (the edge's `x-request-id`, when the request
came with one), plus what the reason is about (`resourceType`, `limit`, ...).
`docs/errors.md` is the table of every reason and what a client should do.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

#: One domain for every service (the reason says what, the domain whose API it is).
ERROR_DOMAIN = "socialmesh.dev"


class Reason(StrEnum):
    """Every `ErrorInfo.reason` a service returns (documented in docs/errors.md).

    Each gRPC code has a generic reason (its own name) for failures nobody needs to
    tell apart; a client acts on the specific ones.
    """

    # Generic, one per code.
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    # UNAUTHENTICATED (401): which token, and what to do about it.
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    SESSION_ENDED = "SESSION_ENDED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    REFRESH_TOKEN_EXPIRED = "REFRESH_TOKEN_EXPIRED"
    SERVICE_CREDENTIAL_INVALID = "SERVICE_CREDENTIAL_INVALID"
    #: An event stream ticket that is unknown, already spent or past its 60 s.
    TICKET_INVALID = "TICKET_INVALID"
    # INVALID_ARGUMENT (400) with a meaning of its own.
    WRONG_PASSWORD = "WRONG_PASSWORD"
    VERIFICATION_TOKEN_INVALID = "VERIFICATION_TOKEN_INVALID"
    RESET_TOKEN_INVALID = "RESET_TOKEN_INVALID"
    #: A push endpoint URL whose host is or resolves to a non-public address.
    PUSH_TARGET_NOT_PUBLIC = "PUSH_TARGET_NOT_PUBLIC"
    EMOJI_INVALID = "EMOJI_INVALID"
    # PERMISSION_DENIED (403).
    NOT_OWNER = "NOT_OWNER"
    BLOCKED = "BLOCKED"
    PRIVATE_ACCOUNT = "PRIVATE_ACCOUNT"
    FOLLOWERS_ONLY = "FOLLOWERS_ONLY"
    NOT_ADMIN = "NOT_ADMIN"
    USER_CALLERS_ONLY = "USER_CALLERS_ONLY"
    SERVICE_CALLERS_ONLY = "SERVICE_CALLERS_ONLY"
    # ALREADY_EXISTS (409).
    HANDLE_TAKEN = "HANDLE_TAKEN"
    # FAILED_PRECONDITION (400).
    MEDIA_NOT_READY = "MEDIA_NOT_READY"
    MEDIA_IN_USE = "MEDIA_IN_USE"
    EMAIL_ALREADY_VERIFIED = "EMAIL_ALREADY_VERIFIED"
    EMAIL_VERIFIED_ELSEWHERE = "EMAIL_VERIFIED_ELSEWHERE"
    BLOCKING = "BLOCKING"
    MESSAGE_DELETED = "MESSAGE_DELETED"
    EDIT_WINDOW_CLOSED = "EDIT_WINDOW_CLOSED"
    LIMIT_REACHED = "LIMIT_REACHED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    #: A push endpoint of a kind (Web Push, APNs, FCM) this server has no credentials for.
    PUSH_PROVIDER_NOT_CONFIGURED = "PUSH_PROVIDER_NOT_CONFIGURED"
    NOT_PENDING = "NOT_PENDING"
    # RESOURCE_EXHAUSTED (429).
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"


_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "socialmesh_request_id", default=""
)
MAX_REQUEST_ID = 128


def set_request_id(request_id: str) -> contextvars.Token[str]:
    """The id of the request being handled (the edge's `x-request-id`), for error bodies."""
    cleaned = request_id.strip()[:MAX_REQUEST_ID]
    return _request_id.set(cleaned if cleaned.isprintable() else "")


def reset_request_id(token: contextvars.Token[str]) -> None:
    try:
        _request_id.reset(token)
    except ValueError:  # reset from another task's context (a cancelled stream)
        _request_id.set("")


def current_request_id() -> str:
    return _request_id.get()


def request_id_from(metadata: Any) -> str:
    """`x-request-id` of gRPC invocation metadata ("" when absent)."""
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str):
            return value
    return ""


_SNAKE_PART = re.compile(r"_([a-z0-9])")


def camel_path(path: str) -> str:
    """A proto field path as JSON clients write it: `post.media_ids[0]` -> `post.mediaIds[0]`."""
    return ".".join(_SNAKE_PART.sub(lambda m: m.group(1).upper(), part) for part in path.split("."))


def _packed(details: Sequence[object]) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)  # type: ignore[arg-type]
        packed.append(holder)
    return packed


def stamp(status: status_pb2.Status, *, default_reason: str | None = None) -> status_pb2.Status:
    """The status with this request's id in its ErrorInfo (one is added if it has none).

    Also used on a peer's status passed on unchanged: its reason stays, the request
    id becomes ours.
    """
    request_id = current_request_id()
    for holder in status.details:
        if holder.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            holder.Unpack(info)
            if request_id:
                info.metadata["requestId"] = request_id
            else:
                info.metadata.pop("requestId", None)
            holder.Pack(info)
            return status
    reason = default_reason or code_pb2.Code.Name(status.code)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    if request_id:
        info.metadata["requestId"] = request_id
    status.details.extend(_packed([info]))
    return status


class ServiceError(Exception):
    """A failure the API promises, with the gRPC code clients should see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        #: Response metadata to send with the error (the edge makes it HTTP headers).
        self.response_headers: list[tuple[str, str]] = []

    def error_info(self) -> error_details_pb2.ErrorInfo:
        info = error_details_pb2.ErrorInfo(reason=str(self.reason), domain=ERROR_DOMAIN)
        for key, value in self.metadata.items():
            info.metadata[key] = str(value)
        return info

    def details(self) -> list[object]:
        return [self.error_info()]

    def status_proto(self) -> status_pb2.Status:
        """As a google.rpc.Status (also what stream acks carry), with the request id."""
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name),
            message=self.message,
            details=_packed(self.details()),
        )
        return stamp(status)

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self.status_proto())

    def headers(self) -> tuple[tuple[str, str], ...]:
        """Response metadata to send with the error (the edge makes them HTTP headers)."""
        return tuple(self.response_headers)


class InvalidArgument(ServiceError):
    """400 with a BadRequest naming every bad field, as JSON clients spell it (camelCase)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[tuple[str, str]], *, reason: str | None = None) -> None:
        self.violations = [(camel_path(f), d) for f, d in violations]
        summary = "; ".join(f"{f}: {d}" for f, d in self.violations)
        super().__init__(f"invalid request: {summary}", reason=reason)
        fields = ",".join(dict.fromkeys(f for f, _ in self.violations))
        if fields:
            self.metadata["fields"] = fields

    def details(self) -> list[object]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=f, description=d, reason=str(self.reason)
                    )
                    for f, d in self.violations
                ]
            ),
            self.error_info(),
        ]


#: "post 5 not found", "push endpoint 7 not found", "conversation not found".
_NOT_FOUND_MESSAGE = re.compile(r"^(?P<kind>[a-z][a-z ]*?)(?: (?P<id>\d+))? not found$")


class NotFound(ServiceError):
    """404 naming the resource type (and id) in ErrorInfo metadata and a ResourceInfo.

    `resource` defaults to what a message of the form "<type> [<id>] not found" names.
    """

    code = grpc.StatusCode.NOT_FOUND
    reason = Reason.NOT_FOUND

    def __init__(
        self,
        message: str,
        *,
        resource: str = "",
        resource_id: int | str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        if not resource:
            found = _NOT_FOUND_MESSAGE.match(message)
            if found:
                resource = found["kind"]
                resource_id = resource_id if resource_id is not None else found["id"]
        words = resource.split()
        self.resource = (words[0] + "".join(w.title() for w in words[1:])) if words else ""
        self.resource_id = "" if resource_id is None else str(resource_id)
        if self.resource:
            self.metadata["resourceType"] = self.resource
        if self.resource_id:
            self.metadata["resourceId"] = self.resource_id

    def details(self) -> list[object]:
        found: list[object] = [self.error_info()]
        if self.resource:
            found.append(
                error_details_pb2.ResourceInfo(
                    resource_type=self.resource,
                    resource_name=self.resource_id,
                    description=self.message,
                )
            )
        return found


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = Reason.ALREADY_EXISTS

    def __init__(
        self, message: str, *, field: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.field = camel_path(field) if field else None
        if self.field:
            self.metadata["field"] = self.field


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = Reason.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = Reason.UNAUTHENTICATED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = Reason.FAILED_PRECONDITION


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.UNAVAILABLE


def retry_after_header(seconds: float) -> str:
    """`retry-after` in whole seconds, rounded up (never 0 while still limited)."""
    whole = int(seconds)
    return str(max(1, whole + (1 if seconds > whole else 0)))


class ResourceExhausted(ServiceError):
    """429: RATE_LIMITED with the limit and window, RetryInfo, and a `retry-after` header."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        subject: str,
        retry_after_seconds: float,
        limit: int | None = None,
        window_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.subject = subject
        self.retry_after_seconds = retry_after_seconds
        self.metadata["retryAfter"] = retry_after_header(retry_after_seconds)
        if limit is not None:
            self.metadata["limit"] = str(limit)
        if window_seconds is not None:
            self.metadata["window"] = f"{window_seconds}s"

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
            self.error_info(),
        ]

    def headers(self) -> tuple[tuple[str, str], ...]:
        """retry-after, and the x-ratelimit-* set the edge's own 429 carries too."""
        wait = retry_after_header(self.retry_after_seconds)
        limit = self.metadata.get("limit")
        return (
            ("retry-after", wait),
            *((("x-ratelimit-limit", limit),) if limit else ()),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", wait),
        )
