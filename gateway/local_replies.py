"""The replies Envoy makes by itself, in the services' error shape.

Everything Envoy answers on its own (a refused token, a transcoder error, a 404, 413 or
429, an upstream failure) becomes the same `google.rpc.Status` JSON the services send,
with an `ErrorInfo` reason a client can act on (docs/errors.md). `LOCAL_REPLIES` is the
table; `local_reply_config` turns it into the connection manager's response mappers.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLogFilter, ExtensionFilter
from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    SubstitutionFormatString,
)
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel.v3 import ExpressionFilter
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.google.protobuf import Any, Struct

from .edge_lua import PATH_FIELD_HEADER, UNKNOWN_FIELD_HEADER

#: The `domain` of every ErrorInfo the edge itself writes: the services' one
#: (services/kit/errors.py ERROR_DOMAIN; docs/errors.md), so clients see one scheme.
EDGE_ERROR_DOMAIN = "socialmesh.dev"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
#: CEL: the client did not call over gRPC. gRPC callers get Envoy's own trailers-only
#: replies (grpc-status + grpc-message), where a JSON body would land in grpc-message.
#: The transcoder rewrites a REST request's content-type to application/grpc before it
#: parses path and body, and records the client's path in x-envoy-original-path (a
#: header Envoy strips from what clients send): such a request is still a REST one.
_NOT_GRPC = (
    "!('content-type' in request.headers && "
    "request.headers['content-type'].startsWith('application/grpc') && "
    "!('x-envoy-original-path' in request.headers))"
)


@dataclass(frozen=True)
class LocalReply:
    """How one kind of reply Envoy makes by itself reaches a REST client.

    `when` is a CEL expression over the request and response (Envoy's attributes, e.g.
    `response.code_details`, the `%RESPONSE_CODE_DETAILS%` of the access log)."""

    when: str
    grpc_code: int
    reason: str
    #: Replaces Envoy's own text (kept when empty: it names the field or the limit).
    message: str = ""
    #: The HTTP status to answer with instead of Envoy's (0: keep it).
    status: int = 0
    retry_after_seconds: int = 0
    #: A response header naming the offending field: becomes a BadRequest violation.
    field_header: str = ""


def _code_details(prefix: str) -> str:
    return f"response.code_details.startsWith('{prefix}')"


#: First match wins. Every reply Envoy generates itself (jwt_authn, the transcoder, the
#: buffer and rate-limit filters, routing, upstream failures) becomes the same
#: google.rpc.Status JSON the services send, with a specific ErrorInfo reason - so a
#: client decides "refresh", "sign in" or "retry" from the reason, never from a message.
LOCAL_REPLIES: tuple[LocalReply, ...] = (
    LocalReply(
        _code_details("jwt_authn_access_denied{Jwt_is_expired"),
        16,
        "TOKEN_EXPIRED",
        "the access token has expired: refresh it (POST /v1/auth:refresh)",
    ),
    LocalReply(
        _code_details("jwt_authn_access_denied{Jwt_is_missing"),
        16,
        "TOKEN_MISSING",
        "this call needs a signed-in user: send Authorization: Bearer <access token>",
    ),
    # Everything else jwt_authn refuses: bad signature, unknown issuer, malformed, and a
    # token minted for another audience. jwt_authn answers the last with 403 (and, contra-
    # dicting itself, `WWW-Authenticate: ... error="invalid_token"`); RFC 6750 makes
    # invalid_token a 401, and clients treat 401 as "get a new token" but 403 as "you may
    # not" - for a foreign token the first is right. A service's PERMISSION_DENIED, which
    # the transcoder converts on the response path, is no local reply and stays 403.
    LocalReply(
        _code_details("jwt_authn_access_denied"),
        16,
        "TOKEN_INVALID",
        "the access token is not valid here: sign in again",
        status=401,
    ),
    LocalReply("response.code == 404", 5, "ROUTE_NOT_FOUND", "no such API route"),
    LocalReply(
        "response.code_details.contains('grpc_json_transcode_failure')", 3, "MALFORMED_REQUEST"
    ),
    LocalReply("response.code == 413", 3, "PAYLOAD_TOO_LARGE", "the request body is too large"),
    LocalReply("response.code == 431", 3, "HEADERS_TOO_LARGE", "the request headers are too large"),
    LocalReply("response.code == 414", 3, "URI_TOO_LONG", "the request URI is too long"),
    LocalReply(
        "response.code == 429",
        8,
        "RATE_LIMITED",
        "too many requests from this client: retry after the Retry-After delay",
        retry_after_seconds=1,
    ),
    LocalReply(
        f"response.code == 400 && '{UNKNOWN_FIELD_HEADER}' in response.headers",
        3,
        "UNKNOWN_FIELD",
        field_header=UNKNOWN_FIELD_HEADER,
    ),
    LocalReply(
        f"response.code == 400 && '{PATH_FIELD_HEADER}' in response.headers",
        3,
        "FIELD_IN_PATH",
        field_header=PATH_FIELD_HEADER,
    ),
    LocalReply("response.code == 400", 3, "INVALID_ARGUMENT"),
    LocalReply("response.code == 405", 12, "METHOD_NOT_ALLOWED", "method not allowed here"),
    LocalReply(
        "response.code == 503 || response.code == 502",
        14,
        "UNAVAILABLE",
        "the service is unavailable: retry shortly",
        retry_after_seconds=1,
    ),
    LocalReply(
        "response.code == 504", 4, "DEADLINE_EXCEEDED", "the service did not answer in time"
    ),
    LocalReply("response.code >= 400", 2, "EDGE_ERROR"),
)


def local_reply_config() -> LocalReplyConfig:
    """`LOCAL_REPLIES` as response mappers (they only ever touch Envoy's own replies)."""
    return LocalReplyConfig(mappers=[_response_mapper(reply) for reply in LOCAL_REPLIES])


def _response_mapper(reply: LocalReply) -> ResponseMapper:
    details: list[dict[str, object]] = [
        {
            "@type": _ERROR_INFO,
            "reason": reply.reason,
            "domain": EDGE_ERROR_DOMAIN,
            "metadata": {"requestId": "%REQ(X-REQUEST-ID)%"},
        }
    ]
    if reply.field_header:
        details.append(
            {
                "@type": _BAD_REQUEST,
                "fieldViolations": [
                    {
                        "field": f"%RESP({reply.field_header})%",
                        "description": "%LOCAL_REPLY_BODY%",
                        "reason": reply.reason,
                    }
                ],
            }
        )
    headers: list[HeaderValueOption] = []
    if reply.retry_after_seconds:
        details.append({"@type": _RETRY_INFO, "retryDelay": f"{reply.retry_after_seconds}s"})
        headers.append(
            HeaderValueOption(
                header=HeaderValue(key="retry-after", value=str(reply.retry_after_seconds))
            )
        )
    if reply.reason == "RATE_LIMITED":
        # The same set a service's 429 carries (services/kit/errors.py ResourceExhausted).
        for key, value in (
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", str(reply.retry_after_seconds)),
        ):
            headers.append(HeaderValueOption(header=HeaderValue(key=key, value=value)))
    body = {
        "code": reply.grpc_code,
        "message": reply.message or "%LOCAL_REPLY_BODY%",
        "details": details,
    }
    mapper = ResponseMapper(
        filter=AccessLogFilter(
            extension_filter=ExtensionFilter(
                name="envoy.access_loggers.extension_filters.cel",
                typed_config=Any.pack(
                    ExpressionFilter(expression=f"{_NOT_GRPC} && ({reply.when})")
                ),
            )
        ),
        body_format_override=SubstitutionFormatString(
            json_format=Struct.from_dict(body),
            content_type="application/json",
        ),
        headers_to_add=headers,
    )
    if reply.status:
        mapper.status_code = reply.status
    return mapper
