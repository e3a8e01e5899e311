"""Presence from open streams, shared by every chat instance through Redis.

Each open stream is a field of `presence:streams:<user>` whose value is its
expiry (ms); streams refresh it on every heartbeat, so a crashed instance's
streams age out within `STREAM_TTL_MS`. A user is ONLINE with a live stream
and activity in the last `IDLE_AFTER_MS`, IDLE with a live stream only,
OFFLINE otherwise. Transitions online/offline are what get fanned out
(`PresenceBroadcast`: an event in the log of everyone sharing a conversation).

Presence is shared only through a conversation both people accepted (a
pending message request or group invitation reveals nothing), never across a
block. The same hash caps how many streams one account holds open at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis
from socialmesh.chat.v1 import chat_pb2

from services.kit.auth import Caller
from services.kit.errors import InvalidArgument

from .blocks import Blocks
from .eventlog import Wakeups, event_at
from .store import ChatStore

log = logging.getLogger("socialmesh.chat")

PRESENCE_BATCH = 200

STREAM_TTL_MS = 70_000
IDLE_AFTER_MS = 5 * 60_000

ONLINE = chat_pb2.PRESENCE_STATE_ONLINE
IDLE = chat_pb2.PRESENCE_STATE_IDLE
OFFLINE = chat_pb2.PRESENCE_STATE_OFFLINE

# Drops expired stream fields, then sets (or deletes) one; returns the number of
# live streams before and after. With a limit (ARGV[4] > 0), a new field is not
# set when the user holds that many live streams already: {-1, before}.
_UPDATE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local field = ARGV[2]
local expiry = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local all = redis.call('HGETALL', key)
local before = 0
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then
    redis.call('HDEL', key, all[i])
  elseif all[i] ~= field then
    before = before + 1
  end
end
local existed = redis.call('HEXISTS', key, field)
if existed == 1 then before = before + 1 end
if limit > 0 and existed == 0 and expiry > 0 and before >= limit then
  return {-1, before}
end
if expiry > 0 then
  redis.call('HSET', key, field, expiry)
  redis.call('PEXPIRE', key, expiry - now)
else
  redis.call('HDEL', key, field)
end
return {before, redis.call('HLEN', key)}
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class StreamLimitReached(Exception):
    """The user holds as many open streams as allowed (the new one is not registered)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} open streams")
        self.limit = limit


class PresenceTracker:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @staticmethod
    def _streams_key(user_id: int) -> str:
        return f"presence:streams:{user_id}"

    @staticmethod
    def _active_key(user_id: int) -> str:
        return f"presence:active:{user_id}"

    async def _update(
        self, user_id: int, stream_id: str, expiry: int, limit: int = 0
    ) -> tuple[int, int]:
        before, after = await self._redis.eval(
            _UPDATE, 1, self._streams_key(user_id), _now_ms(), stream_id, expiry, limit
        )
        return int(before), int(after)

    async def open(self, user_id: int, stream_id: str, limit: int = 0) -> bool:
        """Registers a stream; True when the user just came online. With `limit` > 0,
        raises StreamLimitReached instead when the user holds that many already (a
        crashed instance's streams count until they age out, STREAM_TTL_MS)."""
        before, _ = await self._update(user_id, stream_id, _now_ms() + STREAM_TTL_MS, limit)
        if before < 0:
            raise StreamLimitReached(limit)
        await self.touch(user_id)
        return before == 0

    async def refresh(self, user_id: int, stream_id: str) -> None:
        await self._update(user_id, stream_id, _now_ms() + STREAM_TTL_MS)

    async def close(self, user_id: int, stream_id: str) -> bool:
        """Drops a stream; True when the user just went offline."""
        before, after = await self._update(user_id, stream_id, 0)
        return before > 0 and after == 0

    async def touch(self, user_id: int) -> None:
        """The user did something (sent, typed, read, active heartbeat)."""
        await self._redis.set(self._active_key(user_id), _now_ms(), ex=30 * 86400)

    async def states(self, user_ids: Sequence[int]) -> list[chat_pb2.Presence]:
        if not user_ids:
            return []
        now = _now_ms()
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hvals(self._streams_key(user_id))
            pipe.get(self._active_key(user_id))
        replies = await pipe.execute()
        out = []
        for i, user_id in enumerate(user_ids):
            expiries, active = replies[2 * i], replies[2 * i + 1]
            live = any(int(e) > now for e in expiries)
            last_active = int(active) if active else 0
            if not live:
                state = OFFLINE
            elif now - last_active <= IDLE_AFTER_MS:
                state = ONLINE
            else:
                state = IDLE
            presence = chat_pb2.Presence(user_id=user_id, state=state)
            if last_active:
                presence.last_active_time.FromMilliseconds(last_active)
            out.append(presence)
        return out

    async def online(self, user_ids: Sequence[int]) -> set[int]:
        return {p.user_id for p in await self.states(user_ids) if p.state != OFFLINE}


class PresenceBroadcast:
    """BatchGetPresence's answer, and the online/offline events to people who share a
    conversation with the user (their event logs; the streams call `broadcast`)."""

    def __init__(
        self, store: ChatStore, tracker: PresenceTracker, wakeups: Wakeups, blocks: Blocks
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._wakeups = wakeups
        self._blocks = blocks

    async def batch_get(
        self, caller: Caller, request: chat_pb2.BatchGetPresenceRequest
    ) -> chat_pb2.BatchGetPresenceResponse:
        """The states of the people the caller shares an accepted conversation with, but
        no block (and their own)."""
        ids = list(dict.fromkeys(request.user_ids))
        if not ids or len(ids) > PRESENCE_BATCH or any(u <= 0 for u in ids):
            raise InvalidArgument([("user_ids", f"1 to {PRESENCE_BATCH} positive ids")])
        visible = await self._store.share_a_conversation(caller.user_id, ids)
        visible -= await self._blocks.of(caller.user_id, visible)
        if caller.user_id in ids:
            visible.add(caller.user_id)
        shown = [u for u in ids if u in visible]
        return chat_pb2.BatchGetPresenceResponse(presence=await self._tracker.states(shown))

    async def broadcast(self, user_id: int) -> None:
        """Tells everyone sharing a conversation that the user came online or went offline."""
        try:
            peers = await self._store.shared_conversation_peers(user_id)
            blocked = await self._blocks.of(user_id, peers)
            peers = [p for p in peers if p not in blocked]
            if not peers:
                return
            (state,) = await self._tracker.states([user_id])
            event = event_at(datetime.now(UTC), presence=state)
            await self._wakeups.notify(await self._store.append({p: event for p in peers}))
        except Exception:
            log.warning("presence broadcast failed", exc_info=True)
