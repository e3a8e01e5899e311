"""Access tokens that must die before they expire: a per-process mirror of Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import Reason
from ..tasks import cancel_and_wait
from .callers import Caller


class Revocations:
    """Access tokens that must die before they expire, shared through Redis.

    Tokens are stateless, so a deleted account or a session revoked for
    refresh-token reuse would otherwise keep working for up to the token TTL.
    Entries live exactly that long (`revoked:user:<id>`, `revoked:session:<id>`).

    Every service checks them on every request, so the check is a local lookup:
    each process mirrors the revoked ids in memory, fed by a pub/sub channel
    (a revocation reaches every process at once) and by full loads of the index
    `revocations:v1:index` (a sorted set of live revocations by expiry, written
    with the keys; loaded on (re)subscribing, and every `reload_seconds` to heal
    what pub/sub dropped: it delivers at most once). Until the subscription is
    live and loaded (not started, starting, or reconnecting), `is_revoked` asks
    Redis, as before, so no revocation is ever missed.
    """

    #: Pub/sub channel of revocations; messages are `user:<id>` / `session:<id>`.
    CHANNEL = "revocations:v1"
    #: Live revocations, `user:<id>` / `session:<id>` scored by expiry (Unix ms).
    INDEX = "revocations:v1:index"
    _KINDS = ("user", "session")
    _log = logging.getLogger("socialmesh.revocations")

    def __init__(
        self,
        redis: Any,
        ttl_seconds: int,
        *,
        reload_seconds: float = 30.0,
        ping_seconds: float = 15.0,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._reload_seconds = reload_seconds
        self._ping_seconds = ping_seconds
        # kind -> id -> time.monotonic() at which the entry expires.
        self._revoked: dict[str, dict[int, float]] = {kind: {} for kind in self._KINDS}
        self._healthy = False
        self._changed = asyncio.Event()  # set whenever `_healthy` flips
        self._tasks: list[asyncio.Task[None]] = []
        #: (kind, id) -> events of open streams to wake when that id is revoked.
        self._watchers: dict[tuple[str, int], set[asyncio.Event]] = {}

    @property
    def healthy(self) -> bool:
        """True while the local mirror is complete (subscribed and loaded)."""
        return self._healthy

    def start(self) -> None:
        """Starts mirroring; until the first load completes, checks ask Redis."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._subscription(), name="revocations-listen"),
                asyncio.create_task(self._reloads(), name="revocations-reload"),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        self._set_healthy(False)

    async def until_healthy(self) -> None:
        """Returns once checks are local (callers bound the wait with a timeout)."""
        while not self._healthy:
            self._changed.clear()
            await self._changed.wait()

    def watch(self, caller: Caller, wake: asyncio.Event) -> Callable[[], None]:
        """Sets `wake` as soon as this process learns that the caller's account or session
        is revoked (its own revocation, or the pub/sub message from the process that made
        it): a long-lived stream re-checks and ends within a moment, not at its next
        heartbeat. Returns the function that stops watching (call it when the stream ends).
        """
        keys = [("user", caller.user_id), ("session", caller.session_id)]
        for key in keys:
            self._watchers.setdefault(key, set()).add(wake)

        def unwatch() -> None:
            for key in keys:
                watching = self._watchers.get(key)
                if watching is not None:
                    watching.discard(wake)
                    if not watching:
                        del self._watchers[key]

        return unwatch

    async def revoke_user(self, user_id: int) -> None:
        await self._revoke("user", user_id)

    async def revoke_session(self, session_id: int) -> None:
        await self._revoke("session", session_id)

    async def _revoke(self, kind: str, ident: int) -> None:
        # Local first: this process refuses the token from now on, whatever happens next.
        self._remember(kind, ident, time.monotonic() + self._ttl)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"revoked:{kind}:{ident}", 1, ex=self._ttl)
        pipe.zadd(self.INDEX, {f"{kind}:{ident}": (time.time() + self._ttl) * 1000})
        await pipe.execute()
        await self._redis.publish(self.CHANNEL, f"{kind}:{ident}")

    async def is_revoked(self, caller: Caller) -> bool:
        return await self.revoked_reason(caller) is not None

    async def revoked_reason(self, caller: Caller) -> Reason | None:
        """Why the caller's token no longer counts: TOKEN_REVOKED (the account was
        deleted) or SESSION_ENDED (signed out, or the session was revoked); None if live."""
        if self._held("user", caller.user_id):
            return Reason.TOKEN_REVOKED
        if self._held("session", caller.session_id):
            return Reason.SESSION_ENDED
        if self._healthy:
            return None
        user, session = await self._redis.mget(
            [f"revoked:user:{caller.user_id}", f"revoked:session:{caller.session_id}"]
        )
        if user is not None:
            return Reason.TOKEN_REVOKED
        return Reason.SESSION_ENDED if session is not None else None

    def _held(self, kind: str, ident: int) -> bool:
        entries = self._revoked[kind]
        expires = entries.get(ident)
        if expires is None:
            return False
        if expires <= time.monotonic():
            entries.pop(ident, None)  # lazily pruned; `_load` sweeps the rest
            return False
        return True

    def _remember(self, kind: str, ident: int, expires: float) -> None:
        entries = self._revoked[kind]
        entries[ident] = max(expires, entries.get(ident, expires))
        for wake in self._watchers.get((kind, ident), ()):
            wake.set()

    def _parse(self, entry: bytes | str) -> tuple[str, int] | None:
        """(kind, id) of `user:<id>` / `session:<id>`; None if it is neither."""
        text = entry.decode() if isinstance(entry, bytes) else entry
        kind, _, ident = text.partition(":")
        if kind in self._revoked and ident.isdigit():
            return kind, int(ident)
        return None

    def _apply(self, data: bytes | str) -> None:
        parsed = self._parse(data)
        if parsed is None:
            self._log.warning("ignoring malformed revocation message %r", data)
        else:
            self._remember(*parsed, time.monotonic() + self._ttl)

    def _set_healthy(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self._changed.set()

    async def _load(self) -> None:
        """Merges the index's live revocations into the mirror (and trims the index).

        Merging, never replacing: a message applied while the load runs stays.
        """
        now_ms = time.time() * 1000
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self.INDEX, "-inf", now_ms)
        pipe.zrangebyscore(self.INDEX, now_ms, "+inf", withscores=True)
        _, rows = await pipe.execute()
        now = time.monotonic()
        for member, expires_ms in rows:
            parsed = self._parse(member)
            if parsed is not None:
                self._remember(*parsed, now + (float(expires_ms) - now_ms) / 1000)
        for entries in self._revoked.values():
            for ident in [i for i, expires in entries.items() if expires <= now]:
                del entries[ident]

    async def _subscription(self) -> None:
        """Subscribes, loads, then applies messages; after any failure starts over."""
        delay = 0.2
        while True:
            began = time.monotonic()
            try:
                await self._subscribed_session()
            except Exception:
                self._log.warning(
                    "revocation subscription lost; checking Redis until it is back", exc_info=True
                )
            if time.monotonic() - began > 60:
                delay = 0.2  # it had been working: a fresh outage
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _subscribed_session(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.CHANNEL)
            # Subscribed *before* loading: a revocation published during the load
            # waits in the socket instead of falling between the two.
            async with asyncio.timeout(10):
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "subscribe":
                        break
            await self._load()
            self._set_healthy(True)
            await self._listen(pubsub)
        finally:
            self._set_healthy(False)
            await pubsub.aclose()

    async def _listen(self, pubsub: Any) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._ping_seconds)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message["type"] == "message":
                    self._apply(message["data"])
                elif message["type"] == "subscribe":
                    # redis-py reconnected and resubscribed by itself: messages
                    # may have been lost in between, so start over (and reload).
                    raise ConnectionError("revocation subscription was re-established")
            elif now - heard >= self._ping_seconds:
                # A silent channel or a dead connection? A PING on it tells.
                if pinged:
                    raise ConnectionError("revocation subscription does not answer PING")
                await pubsub.ping()
                heard, pinged = now, True

    async def _reloads(self) -> None:
        """Full reloads while healthy: heals any message pub/sub dropped."""
        while True:
            await asyncio.sleep(self._reload_seconds)
            if not self._healthy:
                continue  # the subscription reloads when it is back
            try:
                await self._load()
            except Exception:
                self._log.warning("periodic revocation reload failed", exc_info=True)
