"""What the OpenAPI document says about the browser-facing edge the protos cannot describe.

Two behaviours reach clients through the edge without being a transcoded method:

* `GET /v1/events/sse`: the caller's event stream as browser-native Server-Sent Events,
  served by chat's small HTTP server behind the edge (services/chat/sse.py). It takes a
  single-use `ticket` (from `POST /v1/events:ticket`) because EventSource cannot send an
  Authorization header, resumes from `Last-Event-ID`, and names each frame's `event:`.
* The refresh token as an HttpOnly cookie (services/user/cookies.py): a request header
  on login and refresh asks for it, their answers set it (`Set-Cookie`), refresh reads it
  when the body has no token, and logout clears it.

The gateway imports no service, so the names here are spelled again; tests/test_openapi.py
checks them against services/chat/sse.py and services/user/cookies.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor, descriptor_pool

SSE_PATH = "/v1/events/sse"
TICKET_PATH = "/v1/events:ticket"
CHAT_EVENT = "socialmesh.chat.v1.ChatEvent"
#: The oneof of ChatEvent whose set field names a frame's `event:` (camelCase JSON name).
CHAT_EVENT_ONEOF = "event"
#: The `event:` name of the frame a stream ends with when it fails after it started.
SSE_ERROR_EVENT = "error"
#: services/chat/sse.py RECONNECT_MILLISECONDS: the `retry:` line a stream starts with.
SSE_RETRY_MILLISECONDS = 2000

TRANSPORT_HEADER = "x-refresh-token-transport"
REFRESH_COOKIE = "sm_refresh"
SESSION_HINT_COOKIE = "sm_session"
REFRESH_COOKIE_PATH = "/v1/auth:refresh"
LOGIN_PATH = "/v1/auth:login"
REFRESH_PATH = "/v1/auth:refresh"
#: The calls that end a session and always clear the cookies (whatever the transport).
LOGOUT_PATHS = ("/v1/auth:logout", "/v1/auth:logoutEverywhere")

#: A message's schema reference (the document's placeholder until it names schemas).
MessageRef = Callable[[descriptor.Descriptor], dict[str, Any]]


def add_browser_surface(
    paths: dict[str, dict[str, Any]],
    pool: descriptor_pool.DescriptorPool,
    message_ref: MessageRef,
    error_ref: dict[str, Any],
    comments: dict[str, str],
) -> None:
    """Adds the SSE stream (when the contract has chat's events) and the refresh cookie
    (on the auth calls the contract has) to `paths`, in place."""
    try:
        chat_event = pool.FindMessageTypeByName(CHAT_EVENT)
    except KeyError:
        chat_event = None
    if chat_event is not None and TICKET_PATH in paths:
        paths[SSE_PATH] = {"get": _sse_operation(chat_event, message_ref, error_ref, comments)}
    for path in (LOGIN_PATH, REFRESH_PATH):
        if path in paths:
            _cookie_transport(paths[path]["post"], refresh=path == REFRESH_PATH)
    for path in LOGOUT_PATHS:
        if path in paths:
            _cookie_cleared(paths[path]["post"])


def sse_event_names(chat_event: descriptor.Descriptor) -> list[str]:
    """The `event:` names a stream sends: one per ChatEvent kind, as sse.event_kind names
    them (the oneof field's camelCase JSON name)."""
    return [f.json_name for f in chat_event.oneofs_by_name[CHAT_EVENT_ONEOF].fields]


def _sse_operation(
    chat_event: descriptor.Descriptor,
    message_ref: MessageRef,
    error_ref: dict[str, Any],
    comments: dict[str, str],
) -> dict[str, Any]:
    kinds = chat_event.oneofs_by_name[CHAT_EVENT_ONEOF].fields
    events: dict[str, Any] = {
        f.json_name: {
            "description": (
                f"{comments.get(f.full_name, f.json_name).rstrip('.')}: a ChatEvent whose "
                f"`{f.json_name}` is set."
            ),
            "data": message_ref(chat_event),
        }
        for f in kinds
    }
    events[SSE_ERROR_EVENT] = {
        "description": "The stream failed after it had started (a google.rpc.Status); "
        "it ends after this frame.",
        "data": dict(error_ref),
    }
    names = ", ".join(f"`{name}`" for name in events)
    frames = (
        f"Each frame is `id: <cursor>` (when the event has one), `event: <name>` and "
        f"`data: <ChatEvent JSON on one line>`, then a blank line; the stream starts with "
        f"`retry: {SSE_RETRY_MILLISECONDS}`. Event names: {names} (x-sse-events gives each "
        "one's data)."
    )
    return {
        "operationId": "streamEventsSse",
        "tags": ["ChatService"],
        "summary": "The caller's event stream as browser-native Server-Sent Events",
        "description": "The caller's event stream as browser-native Server-Sent Events, for "
        "`new EventSource(ticket.url)`: the same events as `GET /v1/events:stream`, "
        "served beside the transcoded API (not a proto method). EventSource cannot send "
        "an Authorization header, so it authenticates with `ticket`, a single-use "
        f"credential valid for 60 s from `POST {TICKET_PATH}`; any other client may send "
        "`Authorization: Bearer` instead. A long-lived token never goes in the URL. "
        f"{frames} A reconnecting EventSource sends the last `id:` back as `Last-Event-ID` "
        "and the stream resumes after it. It ends like StreamEvents (a `control` event "
        "first) and within a second of a sign-out; an account has at most "
        "CHAT_MAX_STREAMS_PER_USER open streams (429 TOO_MANY_STREAMS).",
        "parameters": [
            {
                "name": "ticket",
                "in": "query",
                "description": f"A stream ticket from `POST {TICKET_PATH}` (single-use, "
                "60 s; its `url` already carries it). Needed unless the request has "
                "`Authorization: Bearer`.",
                "schema": {"type": "string", "description": "A stream ticket."},
            },
            {
                "name": "since",
                "in": "query",
                "description": "Resume after this cursor on the first connection "
                "(`Last-Event-ID` wins when both are sent).",
                "schema": {"type": "string", "description": "A ChatEvent cursor."},
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "description": "Sent by a reconnecting EventSource: the `id:` (cursor) of "
                "the last frame it received; the stream resumes after it.",
                "schema": {"type": "string", "description": "A ChatEvent cursor."},
            },
        ],
        "responses": {
            "200": {
                "description": "A stream of Server-Sent Events (ChatEvent JSON per frame)",
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "string",
                            "description": f"Server-Sent Events. {frames}",
                        },
                        "x-sse-data": message_ref(chat_event),
                        "x-sse-events": events,
                    }
                },
            },
            "204": {
                "description": "The stream ended before its first event (the server is "
                "stopping); EventSource does not reconnect after a 204: open a new one."
            },
            "default": {
                "description": "An error before the stream started: a google.rpc.Status "
                "(401 TICKET_INVALID, TOKEN_MISSING, TOKEN_EXPIRED; 403 USER_CALLERS_ONLY; "
                "429 TOO_MANY_STREAMS; 503)",
                "content": {"application/json": {"schema": dict(error_ref)}},
            },
        },
        # A ticket or a bearer token: both are the signed-in user's. The ticket is a query
        # parameter rather than a second security scheme, so generators keep one client.
        "security": [{"bearer": []}],
        "x-socialmesh-stream": "server-sent-events",
        "x-socialmesh-not-transcoded": True,
    }


def _parameters(op: dict[str, Any]) -> list[dict[str, Any]]:
    """The operation's parameters, created where a reader looks for them (before the body)."""
    if "parameters" not in op:
        items = list(op.items())
        op.clear()
        for key, value in items:
            if key in ("requestBody", "responses") and "parameters" not in op:
                op["parameters"] = []
            op[key] = value
    parameters: list[dict[str, Any]] = op["parameters"]
    return parameters


def _set_cookie_header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _cookie_transport(op: dict[str, Any], *, refresh: bool) -> None:
    """Login and refresh: the header that asks for the cookie, and the cookie they set."""
    _parameters(op).append(
        {
            "name": TRANSPORT_HEADER,
            "in": "header",
            "description": "`cookie`: the refresh token is set as the HttpOnly "
            f"`{REFRESH_COOKIE}` cookie (for browsers: scripts never see it) and "
            "`refreshToken` is empty in the answer. Absent: the token is in the body.",
            "schema": {
                "type": "string",
                "enum": ["cookie"],
                "description": "How the refresh token travels.",
            },
        }
    )
    if refresh:
        op["parameters"].append(
            {
                "name": REFRESH_COOKIE,
                "in": "cookie",
                "description": "The refresh token a browser holds as a cookie (set by "
                f"login or refresh with `{TRANSPORT_HEADER}: cookie`, sent only to "
                f"{REFRESH_COOKIE_PATH}); read when the body's `refreshToken` is empty.",
                "schema": {"type": "string", "description": "A refresh token."},
            }
        )
    ok = op["responses"]["200"]
    ok["headers"] = {
        "Set-Cookie": _set_cookie_header(
            f"Only with `{TRANSPORT_HEADER}: cookie`, two cookies: "
            f"`{REFRESH_COOKIE}=<refresh token>; HttpOnly; SameSite=Strict; "
            f"Path={REFRESH_COOKIE_PATH}; Max-Age=<refresh lifetime>` and "
            f"`{SESSION_HINT_COOKIE}=1; SameSite=Strict; Path=/; Max-Age=<same>` (no "
            "secret: tells a page there is a session to restore), each with `Secure` "
            "when the request came over https."
        )
    }
    if refresh:
        op["responses"]["default"]["headers"] = {
            "Set-Cookie": _set_cookie_header(
                f"When the refresh token came from the `{REFRESH_COOKIE}` cookie and is "
                f"refused: both cookies cleared (`{REFRESH_COOKIE}=; ...; Max-Age=0`, "
                f"`{SESSION_HINT_COOKIE}=; ...; Max-Age=0`)."
            )
        }


def _cookie_cleared(op: dict[str, Any]) -> None:
    """Logout and logout-everywhere clear both cookies, whichever transport was used."""
    op["responses"]["200"]["headers"] = {
        "Set-Cookie": _set_cookie_header(
            f"Always: `{REFRESH_COOKIE}=; HttpOnly; SameSite=Strict; "
            f"Path={REFRESH_COOKIE_PATH}; Max-Age=0` and `{SESSION_HINT_COOKIE}=; "
            "SameSite=Strict; Path=/; Max-Age=0` (a browser drops both; `Secure` over https)."
        )
    }
