"""Push to offline devices: a sender interface, the signed webhook sender, and the delivery worker.

Deliveries are rows in `push_deliveries`, written in the transaction of what
caused them (a message, a notification), so nothing is pushed for a rolled-back
change and nothing is lost when an instance dies. `PushWorker` runs on every
chat instance: it leases due rows with `FOR UPDATE SKIP LOCKED` (instances
share the work, never send one row twice at once), sends them outside any
transaction, deletes what was delivered and reschedules failures with
exponential backoff until it gives up. Nothing here runs on the request path.

Webhooks are signed as Standard Webhooks specifies (`webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` with the
endpoint's `whsec_` secret) and only reach public addresses: the session's
connector resolves and checks every name at connect time and connects to the
checked address (services/kit/egress.py); redirects are never followed. The
other kinds (Web Push, APNs, FCM) live in services/chat/notifications/.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from google.protobuf import json_format
from socialmesh.chat.v1 import chat_pb2

from services.kit.db import Database
from services.kit.egress import EgressGuard, EgressRefused, GuardedClient, refused_by_guard
from services.kit.migrations import quote_ident
from services.kit.tasks import BackgroundLoop

log = logging.getLogger("socialmesh.chat.push")

#: Header naming the delivery, so a receiver can drop a duplicate (a lease that
#: expired mid-send makes delivery at-least-once).
DELIVERY_HEADER = "X-Socialmesh-Delivery"
USER_AGENT = "socialmesh-push/1"
#: Standard Webhooks headers (https://www.standardwebhooks.com/).
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"

#: push_endpoints.kind (chat.proto PushEndpointKind).
KIND_WEBHOOK = chat_pb2.PUSH_ENDPOINT_KIND_WEBHOOK
KIND_WEB_PUSH = chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH
KIND_APNS = chat_pb2.PUSH_ENDPOINT_KIND_APNS
KIND_FCM = chat_pb2.PUSH_ENDPOINT_KIND_FCM


@dataclass(frozen=True)
class PushTarget:
    """Where one delivery goes, with what its kind needs (secret, keys, device token)."""

    delivery_id: int
    push_endpoint_id: int
    user_id: int
    url: str
    kind: int = KIND_WEBHOOK
    signing_secret: str = ""
    p256dh: str = ""
    auth_secret: str = ""
    device_token: str = ""


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, key = the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class PushFailed(Exception):
    """A delivery that did not succeed.

    `retry` False: the receiver refused for good (e.g. 400), retrying cannot help.
    `gone` True: the endpoint no longer exists (410): it is removed.
    """

    def __init__(self, reason: str, *, retry: bool = True, gone: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry
        self.gone = gone


class PushSender(Protocol):
    """Delivers one event to one endpoint; raises `PushFailed` (or any error) on failure."""

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None: ...

    async def close(self) -> None: ...


class WebhookSender:
    """POSTs the event as proto3 JSON to the endpoint's URL, signed, to public addresses only.

    Redirects are not followed (an endpoint must not bounce pushes to another
    host); only 2xx counts as delivered. A target the guard refuses (an
    internal address now, after DNS changed) fails without retry.
    """

    def __init__(self, *, timeout_seconds: float = 5.0, guard: EgressGuard | None = None) -> None:
        self._guard = guard or EgressGuard.from_env()
        self._http = GuardedClient(
            self._guard, timeout_seconds=timeout_seconds, user_agent=USER_AGENT
        )

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        body = json.dumps(
            json_format.MessageToDict(event), separators=(",", ":"), ensure_ascii=False
        ).encode()
        try:
            self._guard.check_url(target.url)
        except EgressRefused as exc:
            raise PushFailed(f"target refused: {exc}", retry=False) from exc
        # One id per delivery, kept across retries, so a receiver drops duplicates.
        message_id = f"msg_{target.delivery_id}"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(target.delivery_id),
            WEBHOOK_ID_HEADER: message_id,
            WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        }
        if target.signing_secret:
            headers[WEBHOOK_SIGNATURE_HEADER] = webhook_signature(
                target.signing_secret, message_id, timestamp, body
            )
        await post_checked(self._http.session(), target.url, body, headers)

    async def close(self) -> None:
        await self._http.close()


async def post_checked(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    gone_statuses: tuple[int, ...] = (410,),
) -> None:
    """POSTs without following redirects; maps the answer to success or `PushFailed`.

    `gone_statuses` remove the endpoint (a webhook's 410; a Web Push service
    answers 404 or 410 for an expired subscription).
    """
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        refusal = refused_by_guard(exc)
        if refusal is not None:
            # The name resolves to an internal address now: it will not get better.
            raise PushFailed(f"target refused: {refusal}", retry=False) from exc
        raise PushFailed(f"{type(exc).__name__}: {exc}") from exc
    raise_for_push_status(status, gone_statuses=gone_statuses)


def raise_for_push_status(status: int, *, gone_statuses: tuple[int, ...] = (410,)) -> None:
    """2xx is delivered; `gone_statuses` remove the endpoint; 408/429/5xx retry."""
    if 200 <= status < 300:
        return
    if status in gone_statuses:
        raise PushFailed(f"HTTP {status}: endpoint gone", retry=False, gone=True)
    # 408/429 and 5xx are the receiver's temporary trouble; other 4xx and
    # 3xx (a redirect is never followed) will not change on retry.
    transient = status in (408, 429) or status >= 500
    raise PushFailed(f"HTTP {status}", retry=transient)


@dataclass(frozen=True)
class PushConfig:
    """Retry policy: delay = first_backoff · 2^(attempts-1), capped; give up after max_attempts."""

    max_attempts: int = 8
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 3600.0
    #: A claimed row is invisible to other workers this long (longer than a send).
    lease_seconds: float = 60.0
    batch: int = 50
    #: How often an idle worker looks for due rows (a poke wakes it sooner).
    poll_seconds: float = 1.0

    def backoff(self, attempts: int) -> float:
        return float(
            min(self.first_backoff_seconds * 2 ** max(attempts - 1, 0), self.max_backoff_seconds)
        )


class PushWorker(BackgroundLoop):
    """Sends due deliveries; several instances share them through SKIP LOCKED leases."""

    def __init__(
        self,
        db: Database,
        sender: PushSender,
        *,
        schema: str = "chat",
        config: PushConfig | None = None,
    ) -> None:
        self._db = db
        self._sender = sender
        self._schema = quote_ident(schema)
        self.config = config or PushConfig()
        self._wake = asyncio.Event()
        #: delivered, failed_attempts, given_up, endpoints_gone.
        self.stats: dict[str, int] = {
            "delivered": 0,
            "failed_attempts": 0,
            "given_up": 0,
            "endpoints_gone": 0,
        }

    def task_name(self) -> str:
        return "chat-push-worker"

    def poke(self) -> None:
        """Look for due rows now (call after committing new deliveries)."""
        self._wake.set()

    async def _claim(self) -> list[tuple[PushTarget, bytes, int]]:
        """Leases up to `batch` due rows: pushes their next_attempt past the lease.

        The lease commits at once, so no transaction stays open during the
        sends; if this instance dies mid-send, the rows come due again when
        the lease runs out.
        """
        s = self._schema
        rows = await self._db.primary.fetch(
            f"""WITH due AS (
                    SELECT delivery_id FROM {s}.push_deliveries
                    WHERE next_attempt <= now()
                    ORDER BY next_attempt
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED)
                UPDATE {s}.push_deliveries d
                SET next_attempt = now() + make_interval(secs => $1)
                FROM due, {s}.push_endpoints e
                WHERE d.delivery_id = due.delivery_id
                  AND e.push_endpoint_id = d.push_endpoint_id
                RETURNING d.delivery_id, d.payload, d.attempts,
                          e.push_endpoint_id, e.user_id, e.url, e.kind, e.signing_secret,
                          e.p256dh, e.auth_secret, e.device_token""",
            self.config.lease_seconds,
            self.config.batch,
        )
        return [
            (
                PushTarget(
                    int(r["delivery_id"]),
                    int(r["push_endpoint_id"]),
                    int(r["user_id"]),
                    str(r["url"]),
                    kind=int(r["kind"]),
                    signing_secret=str(r["signing_secret"]),
                    p256dh=str(r["p256dh"]),
                    auth_secret=str(r["auth_secret"]),
                    device_token=str(r["device_token"]),
                ),
                bytes(r["payload"]),
                int(r["attempts"]),
            )
            for r in rows
        ]

    async def run_once(self) -> int:
        """Claims and sends one batch of due deliveries; returns how many it tried."""
        claimed = await self._claim()
        if claimed:
            await asyncio.gather(*(self._deliver(t, p, a) for t, p, a in claimed))
        return len(claimed)

    async def _deliver(self, target: PushTarget, payload: bytes, attempts: int) -> None:
        s = self._schema
        try:
            event = chat_pb2.ChatEvent.FromString(payload)
            await self._sender.send(target, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(target, attempts + 1, exc)
            return
        await self._db.primary.execute(
            f"DELETE FROM {s}.push_deliveries WHERE delivery_id = $1", target.delivery_id
        )
        self.stats["delivered"] += 1

    async def _failed(self, target: PushTarget, attempts: int, exc: Exception) -> None:
        s = self._schema
        error = f"{type(exc).__name__}: {exc}"[:1000]
        self.stats["failed_attempts"] += 1
        if isinstance(exc, PushFailed) and exc.gone:
            # The receiver says the endpoint is gone for good: forget it (and,
            # by cascade, everything queued for it).
            await self._db.primary.execute(
                f"DELETE FROM {s}.push_endpoints WHERE push_endpoint_id = $1",
                target.push_endpoint_id,
            )
            self.stats["endpoints_gone"] += 1
            log.info("push endpoint %d gone (%s); removed", target.push_endpoint_id, exc)
            return
        retry = not isinstance(exc, PushFailed) or exc.retry
        if not retry or attempts >= self.config.max_attempts:
            await self._db.primary.execute(
                f"DELETE FROM {s}.push_deliveries WHERE delivery_id = $1", target.delivery_id
            )
            self.stats["given_up"] += 1
            log.warning(
                "gave up push delivery %d to endpoint %d (user %d) after %d attempts: %s",
                target.delivery_id,
                target.push_endpoint_id,
                target.user_id,
                attempts,
                error,
            )
            return
        delay = self.config.backoff(attempts)
        await self._db.primary.execute(
            f"""UPDATE {s}.push_deliveries
                SET attempts = $2, last_error = $3,
                    next_attempt = now() + make_interval(secs => $4)
                WHERE delivery_id = $1""",
            target.delivery_id,
            attempts,
            error,
            delay,
        )
        log.info(
            "push delivery %d failed (attempt %d/%d, retry in %.1fs): %s",
            target.delivery_id,
            attempts,
            self.config.max_attempts,
            delay,
            error,
        )

    async def run(self) -> None:
        while True:
            # Cleared before the round, so a poke during it triggers another.
            self._wake.clear()
            try:
                tried = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push worker round failed; retrying")
                tried = 0
            if tried >= self.config.batch:
                continue  # more may be due right now
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass
