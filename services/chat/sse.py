"""The caller's event stream as browser-native Server-Sent Events (`GET /v1/events/sse`).

The transcoded `GET /v1/events:stream` frames events as bare `data:` lines and needs an
Authorization header, which `EventSource` cannot send. This small HTTP server (beside
the chat service's gRPC port, reached through the edge like media's file server) sends
the very same events (`ChatServicer._events`) as

    id: <cursor>          -> a reconnecting EventSource sends it back as Last-Event-ID
    event: <kind>         -> message, typing, readReceipt, heartbeat, control, ...
    data: <ChatEvent JSON, as the transcoder prints it>

and authenticates with a single-use ticket (`CreateEventStreamTicket`, 60 s) or the
usual `Authorization: Bearer`. A long-lived token never sits in a URL.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from socialmesh.chat.v1 import chat_pb2

from services.kit.auth import Caller, CallerVerifier, Revocations
from services.kit.errors import (
    PermissionDenied,
    Reason,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from services.kit.sidecar_http import SidecarHttpServer

log = logging.getLogger("socialmesh.chat.sse")

PATH = "/v1/events/sse"
TICKET_TTL_SECONDS = 60
_TICKET_KEY = "chat:sse-ticket:{}"
#: How soon EventSource reconnects after a dropped connection (its `retry:` field).
RECONNECT_MILLISECONDS = 2000
_HTTP_STATUS = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}

EventSourceFn = Callable[[Caller, str], AsyncIterator[chat_pb2.ChatEvent]]


@dataclass(frozen=True)
class TicketHolder:
    """What a ticket stands for: the minting token's user, session and expiry."""

    user_id: int
    session_id: int
    token_id: str
    expires_at: float

    def caller(self) -> Caller:
        return Caller(
            user_id=self.user_id,
            session_id=self.session_id,
            token_id=self.token_id,
            expires_at=self.expires_at,
        )


class StreamTickets:
    """Single-use, short-lived stream credentials in Redis (GETDEL: spent on first use)."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def mint(self, caller: Caller) -> tuple[str, float]:
        """A new ticket for `caller` and when it expires (Unix seconds)."""
        ticket = secrets.token_urlsafe(32)
        holder = TicketHolder(caller.user_id, caller.session_id, caller.token_id, caller.expires_at)
        await self._redis.set(
            _TICKET_KEY.format(ticket), json.dumps(asdict(holder)), ex=TICKET_TTL_SECONDS
        )
        return ticket, time.time() + TICKET_TTL_SECONDS

    async def redeem(self, ticket: str) -> Caller | None:
        if not ticket or len(ticket) > 100:
            return None
        raw = await self._redis.getdel(_TICKET_KEY.format(ticket))
        if raw is None:
            return None
        return TicketHolder(**json.loads(raw)).caller()


def event_kind(event: chat_pb2.ChatEvent) -> str:
    """The SSE `event:` name: the ChatEvent's oneof field, camelCase as in the JSON."""
    kind = event.WhichOneof("event") or "event"
    head, *rest = kind.split("_")
    return head + "".join(part.title() for part in rest)


def frame(event: chat_pb2.ChatEvent) -> bytes:
    """One SSE frame. The JSON is one line (newlines inside strings are escaped)."""
    data = json_format.MessageToJson(event, always_print_fields_with_no_presence=True, indent=None)
    lines = [f"event: {event_kind(event)}", f"data: {data}"]
    if event.cursor:
        lines.insert(0, f"id: {event.cursor}")
    return ("\n".join(lines) + "\n\n").encode()


class EventStreamServer(SidecarHttpServer):
    """An aiohttp app serving `PATH`; `events` is the chat servicer's stream source."""

    label = "event streams (SSE)"

    def __init__(
        self,
        events: EventSourceFn,
        tickets: StreamTickets,
        verifier: CallerVerifier,
        revocations: Callable[[], Revocations | None],
    ) -> None:
        super().__init__()
        self._events = events
        self._tickets = tickets
        self._verifier = verifier
        self._revocations = revocations

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self.handle)
        return app

    async def _caller(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated(
                    "use Authorization: Bearer <token>", reason=Reason.TOKEN_INVALID
                )
            try:
                caller = self._verifier.verify(token.strip())
            except ServiceError:
                raise
            except Exception as exc:  # a verifier failure is the token's fault
                raise Unauthenticated(
                    "the access token is not valid", reason=Reason.TOKEN_INVALID
                ) from exc
        elif "ticket" in request.query:
            redeemed = await self._tickets.redeem(request.query["ticket"])
            if redeemed is None:
                raise Unauthenticated(
                    "the stream ticket is unknown, spent or expired: mint a new one "
                    "(POST /v1/events:ticket)",
                    reason=Reason.TICKET_INVALID,
                )
            caller = redeemed
        else:
            raise Unauthenticated(
                "open the stream with ?ticket= (POST /v1/events:ticket) or a bearer token",
                reason=Reason.TOKEN_MISSING,
            )
        if caller.is_service:
            raise PermissionDenied("event streams are for users", reason=Reason.USER_CALLERS_ONLY)
        if caller.expires_at and time.time() >= caller.expires_at:
            raise Unauthenticated("the access token has expired", reason=Reason.TOKEN_EXPIRED)
        revocations = self._revocations()
        if revocations is not None:
            why = await revocations.revoked_reason(caller)
            if why is not None:
                raise Unauthenticated("the session has ended", reason=why)
        return caller

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await self._caller(request)
        except ServiceError as err:
            return _error(err)
        # Last-Event-ID (an EventSource reconnecting) wins over ?since= (the first open).
        since = request.headers.get("Last-Event-ID") or request.query.get("since", "")
        events = aiter(self._events(caller, since))
        try:
            # The first event (HELLO) comes once the stream is admitted: a refusal
            # (TOO_MANY_STREAMS) is still an HTTP status, which EventSource does not retry.
            first = await anext(events)
        except ServiceError as err:
            return _error(err)
        except StopAsyncIteration:
            return web.Response(status=204)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RECONNECT_MILLISECONDS}\n\n".encode())
        try:
            await response.write(frame(first))
            async for event in events:
                await response.write(frame(event))
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        except ServiceError as err:
            # After the headers: the error travels as a control-like frame, then the end.
            payload = json_format.MessageToJson(err.status_proto(), indent=None)
            await response.write(f"event: error\ndata: {payload}\n\n".encode())
        return response


def _error(err: ServiceError) -> web.Response:
    status = _HTTP_STATUS.get(err.code, 400)
    if isinstance(err, Unavailable):
        status = 503
    body = json_format.MessageToJson(err.status_proto(), indent=None)
    headers = dict(err.headers())
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
