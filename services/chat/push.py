"""Push to offline devices: a sender interface, a webhook sender, and the delivery worker.

Deliveries are rows in `push_deliveries`, written in the transaction of what
caused them (a message, a notification), so nothing is pushed for a rolled-back
change and nothing is lost when an instance dies. `PushWorker` runs on every
chat instance: it leases due rows with `FOR UPDATE SKIP LOCKED` (instances
share the work, never send one row twice at once), sends them outside any
transaction, deletes what was delivered and reschedules failures with
exponential backoff until it gives up. Nothing here runs on the request path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from google.protobuf import json_format
from socialmesh.chat.v1 import chat_pb2

from services.kit.db import Database
from services.kit.migrations import quote_ident
from services.kit.tasks import BackgroundLoop

log = logging.getLogger("socialmesh.chat.push")

#: Header naming the delivery, so a receiver can drop a duplicate (a lease that
#: expired mid-send makes delivery at-least-once).
DELIVERY_HEADER = "X-Socialmesh-Delivery"
USER_AGENT = "socialmesh-push/1"


@dataclass(frozen=True)
class PushTarget:
    """Where one delivery goes."""

    delivery_id: int
    push_endpoint_id: int
    user_id: int
    url: str


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
    """POSTs the event as proto3 JSON to the endpoint's URL.

    Redirects are not followed (an endpoint must not bounce pushes to another
    host); only 2xx counts as delivered.
    """

    def __init__(self, *, timeout_seconds: float = 5.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession binds to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": USER_AGENT}
            )
        return self._session

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        body = json.dumps(json_format.MessageToDict(event), separators=(",", ":"))
        try:
            async with self._client().post(
                target.url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    DELIVERY_HEADER: str(target.delivery_id),
                },
                allow_redirects=False,
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PushFailed(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        if status == 410:
            raise PushFailed("HTTP 410: endpoint gone", retry=False, gone=True)
        # 408/429 and 5xx are the receiver's temporary trouble; other 4xx and
        # 3xx will not change on retry.
        transient = status in (408, 429) or status >= 500
        raise PushFailed(f"HTTP {status}", retry=transient)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
                          e.push_endpoint_id, e.user_id, e.url""",
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
            log.info("push endpoint %d gone (HTTP 410); removed", target.push_endpoint_id)
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
