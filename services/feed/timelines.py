"""Home timelines in Redis: capped sorted sets of post references (a rebuildable cache).

Every member has score 0, so a set is ordered by its member string alone
(lexicographic), and a member starts with its zero-padded sort key (the post's
snowflake id, or a share-time key for a repost): that order is newest-last,
members are unique, and a cursor is an exact member, so pages neither repeat nor
skip while entries are added above or below them (`ZREVRANGEBYLEX` from an
exclusive bound).

Keys (all under `feed:`):

| key | type | what |
|---|---|---|
| `tl:<user>` | zset | the user's home timeline, capped at `TIMELINE_CAP` |
| `tl:<user>:built` | string | present while the timeline is complete (rebuilt or kept up) |
| `author:<id>` | zset | recent posts of an account above the fan-out threshold (read-time merge) |
| `celebrities` | set | accounts served by read-time merge instead of fan-out |
| `celebs:<user>` | set | the above-threshold accounts the user follows |
| `muted:<user>` | set | accounts the user muted (filtered at read) |
| `active` | zset | user -> last feed read (unix seconds): fan-out targets |
| `share:<post>:<sharer>` | string | a repost's sort key (to remove it on unshare) |
| `deleted:<post>` | string | a deleted post (a late PostCreated is not fanned out) |
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from services.kit.ids import EPOCH_MS

TIMELINE_CAP = 800
AUTHOR_CAP = 200
#: Timelines one push script call updates.
PUSH_CHUNK = 1000

# KEYS: timelines; ARGV: cap, ttl, members... Every member at score 0 (see above).
_PUSH = """
local cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  for i = 3, #ARGV do redis.call('ZADD', key, 0, ARGV[i]) end
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""
_MERGE_AUTHOR = """
for _, key in ipairs(KEYS) do redis.call('SADD', key, ARGV[1]) end
return #KEYS
"""
# A read's prelude and, optionally, its first batch of entries, in one call.
# KEYS: active, timeline, built marker, celebs, muted, feedback givers, the reader's
# own author set; ARGV: reader id, now, ttl, count (0: no entries), cursor ("" for
# the top), the author-set key prefix. The followed celebrities' sets are named
# from SMEMBERS inside the script: fine on one Redis, not on Redis Cluster.
_OPEN_READ = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
local built = redis.call('EXISTS', KEYS[3])
local celebs = redis.call('SMEMBERS', KEYS[4])
local muted = redis.call('SMEMBERS', KEYS[5])
local gave = redis.call('SISMEMBER', KEYS[6], ARGV[1])
local entries = {}
local count = tonumber(ARGV[4])
if built == 1 and count > 0 then
  local high = '+'
  if ARGV[5] ~= '' then high = '(' .. ARGV[5] end
  local sources = {KEYS[2], KEYS[7]}
  for _, c in ipairs(celebs) do sources[#sources + 1] = ARGV[6] .. c end
  for _, key in ipairs(sources) do
    for _, m in ipairs(redis.call('ZREVRANGEBYLEX', key, high, '-', 'LIMIT', 0, count)) do
      entries[#entries + 1] = m
    end
  end
end
return {built, celebs, muted, gave, entries}
"""
#: Snowflake layout (kit.ids): 41 bits of ms, then 22 bits of worker and sequence.
_SNOWFLAKE_SHIFT = 22


def tl_key(user_id: int) -> str:
    return f"feed:tl:{user_id}"


def built_key(user_id: int) -> str:
    return f"feed:tl:{user_id}:built"


def author_key(author_id: int) -> str:
    return f"feed:author:{author_id}"


def celebs_key(user_id: int) -> str:
    return f"feed:celebs:{user_id}"


def muted_key(user_id: int) -> str:
    return f"feed:muted:{user_id}"


CELEBRITIES = "feed:celebrities"
ACTIVE = "feed:active"
#: Viewers who ever gave feedback: only their reads query feed.feedback.
FEEDBACK_GIVERS = "feed:feedback-givers"


def share_key(post_id: int, sharer_id: int) -> str:
    return f"feed:share:{post_id}:{sharer_id}"


def deleted_key(post_id: int) -> str:
    return f"feed:deleted:{post_id}"


def share_sort_key(share_time: datetime, post_id: int) -> int:
    """A snowflake-shaped key at the share's time, so reposts sort among posts."""
    ms = max(int(share_time.timestamp() * 1000) - EPOCH_MS, 0)
    return (ms << _SNOWFLAKE_SHIFT) | (post_id & ((1 << _SNOWFLAKE_SHIFT) - 1))


def sort_key_ms(sort_key: int) -> int:
    """Unix milliseconds of a sort key (post id or share key)."""
    return (sort_key >> _SNOWFLAKE_SHIFT) + EPOCH_MS


@dataclass(frozen=True)
class Entry:
    """One timeline entry: a post, or a repost of it by `sharer_id`."""

    sort_key: int
    post_id: int
    author_id: int
    sharer_id: int = 0

    @property
    def member(self) -> str:
        return f"{self.sort_key:020d}:{self.post_id}:{self.author_id}:{self.sharer_id}"

    @classmethod
    def post(cls, post_id: int, author_id: int) -> Entry:
        return cls(post_id, post_id, author_id)

    @classmethod
    def parse(cls, member: bytes | str) -> Entry:
        text = member.decode() if isinstance(member, bytes) else member
        sort_key, post_id, author_id, sharer_id = (int(p) for p in text.split(":"))
        return cls(sort_key, post_id, author_id, sharer_id)

    def involves(self, user_id: int) -> bool:
        """Written or reposted by `user_id`."""
        return self.sharer_id == user_id or (self.sharer_id == 0 and self.author_id == user_id)


@dataclass(frozen=True)
class ReadState:
    """What a feed read needs before its first entry, read in one round trip."""

    #: The timeline is complete (no rebuild needed).
    built: bool
    #: The sets a FOLLOWING read merges (see `Timelines.sources`).
    sources: list[str]
    muted: set[int]
    #: The viewer has feedback rows (the read must query them).
    gave_feedback: bool
    #: With `open_read(first=...)` on a built timeline: what `older` would return.
    batch: list[Entry] | None = None


class Timelines:
    """The Redis side of the feed: pushes, removals and cursor reads."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int) -> None:
        self.redis = redis
        #: Script source -> its SHA in this Redis (loaded on first use).
        self._shas: dict[str, str] = {}
        #: Timelines of users who stop reading expire (and are rebuilt on return).
        self.ttl_seconds = ttl_seconds

    # -- activity ----------------------------------------------------------------

    async def open_read(
        self, user_id: int, first: tuple[str | None, int] | None = None
    ) -> ReadState:
        """Marks the reader active, keeps the timeline alive, and reads `sources`, the
        mutes and the feedback flag, and with `first=(before, count)` the first batch
        a FOLLOWING page walks (`older(sources, before, count)`), in one script call:
        a warm page's Redis work is one round trip."""
        before, count = first if first is not None else (None, 0)
        keys = [
            ACTIVE,
            tl_key(user_id),
            built_key(user_id),
            celebs_key(user_id),
            muted_key(user_id),
            FEEDBACK_GIVERS,
            author_key(user_id),
        ]
        prefix = author_key(0)[:-1]
        args: list[str | int | float] = [
            user_id,
            time.time(),
            self.ttl_seconds,
            count,
            before or "",
            prefix,
        ]
        built, celebs, muted, gave, members = await self._call(_OPEN_READ, keys, args)
        return ReadState(
            built=bool(built),
            sources=self._sources(user_id, celebs),
            muted={int(m) for m in muted},
            gave_feedback=bool(gave),
            batch=_newest(members, count) if built and first is not None else None,
        )

    async def mark_feedback_giver(self, user_id: int) -> None:
        await self.redis.sadd(FEEDBACK_GIVERS, str(user_id))

    async def active_among(self, user_ids: Sequence[int], active_seconds: int) -> list[int]:
        """The users who read their feed within `active_seconds` (one ZMSCORE)."""
        if not user_ids:
            return []
        scores = await self.redis.zmscore(ACTIVE, [str(u) for u in user_ids])
        since = time.time() - active_seconds
        return [u for u, s in zip(user_ids, scores, strict=True) if s is not None and s >= since]

    # -- writes ------------------------------------------------------------------

    async def push(self, user_ids: Iterable[int], entries: Sequence[Entry]) -> int:
        """Adds entries to many timelines; returns how many timelines.

        One script call per `PUSH_CHUNK` timelines (ZADD, trim to the cap and
        EXPIRE each, inside Redis), all in one pipeline: a 10,000-follower
        fan-out is ten commands on the wire, not 30,000.
        """
        keys = [tl_key(u) for u in user_ids]
        if not entries or not keys:
            return 0
        await self._per_chunk(
            _PUSH, keys, [TIMELINE_CAP, self.ttl_seconds, *(e.member for e in entries)]
        )
        return len(keys)

    async def merge_author(self, follower_ids: Sequence[int], author_id: int) -> None:
        """Tells followers' reads to merge an above-threshold account's own set.

        One script call per `PUSH_CHUNK` followers, all in one pipeline: 100,000
        followers are a hundred commands on the wire, not 100,000 SADDs.
        """
        if follower_ids:
            await self._per_chunk(_MERGE_AUTHOR, [celebs_key(f) for f in follower_ids], [author_id])

    async def _call(self, script: str, keys: list[str], args: Sequence[str | int | float]) -> Any:
        """One script call (loaded once per process, reloaded after a flush)."""
        for attempt in (1, 2):
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = await self.redis.script_load(script)
            try:
                return await self.redis.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                if attempt == 2:
                    raise
                self._shas.pop(script, None)

    async def _per_chunk(self, script: str, keys: list[str], args: list[str | int]) -> None:
        """Runs `script` over `keys`, `PUSH_CHUNK` keys per call, in one pipeline.

        Loads the script once per process; a flushed script cache (restart,
        failover) is reloaded and the whole batch run again (the scripts are
        idempotent).
        """
        for attempt in (1, 2):
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = await self.redis.script_load(script)
            pipe = self.redis.pipeline(transaction=False)
            for start in range(0, len(keys), PUSH_CHUNK):
                chunk = keys[start : start + PUSH_CHUNK]
                pipe.evalsha(sha, len(chunk), *chunk, *args)
            try:
                await pipe.execute()
                return
            except NoScriptError:  # (redis-py's message does not say NOSCRIPT)
                if attempt == 2:
                    raise
                self._shas.pop(script, None)

    async def push_author(self, author_id: int, entry: Entry) -> None:
        """Keeps an above-threshold account's post in its own set: O(1) writes."""
        key = author_key(author_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {entry.member: 0})
        pipe.zremrangebyrank(key, 0, -(AUTHOR_CAP + 1))
        await pipe.execute()

    async def remove(self, user_ids: Iterable[int], entries: Sequence[Entry]) -> None:
        members = [e.member for e in entries]
        if not members:
            return
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for user_id in user_ids:
            pipe.zrem(tl_key(user_id), *members)
            n += 1
        if n:
            await pipe.execute()

    async def remove_involving(self, user_id: int, other_id: int) -> int:
        """Drops what `other_id` wrote or reposted from `user_id`'s timeline."""
        key = tl_key(user_id)
        members: list[bytes] = await self.redis.zrange(key, 0, -1)  # type: ignore[assignment]
        gone = [m for m in members if Entry.parse(m).involves(other_id)]
        if gone:
            await self.redis.zrem(key, *gone)
        return len(gone)

    async def mark_built(self, user_id: int) -> None:
        await self.redis.set(built_key(user_id), 1, ex=self.ttl_seconds)

    async def is_built(self, user_id: int) -> bool:
        return bool(await self.redis.exists(built_key(user_id)))

    # -- reads -------------------------------------------------------------------

    async def sources(self, user_id: int) -> list[str]:
        """What a FOLLOWING read merges: the timeline and followed (or own) celebrity sets."""
        return self._sources(user_id, await self.redis.smembers(celebs_key(user_id)))

    @staticmethod
    def _sources(user_id: int, celebs: Iterable[bytes | str]) -> list[str]:
        merged = {author_key(int(c)) for c in celebs} | {author_key(user_id)}
        return [tl_key(user_id), *sorted(merged)]

    async def older(self, keys: Sequence[str], before: str | None, count: int) -> list[Entry]:
        """Up to `count` entries strictly older than `before` (None: the newest), newest first."""
        high = f"({before}" if before else "+"
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrevrangebylex(key, high, "-", start=0, num=count)
        return _newest((m for members in await pipe.execute() for m in members), count)

    async def newer(self, keys: Sequence[str], after: str, count: int) -> list[Entry]:
        """Up to `count` entries strictly newer than `after`, the nearest first (ascending)."""
        low = f"({after}" if after else "-"
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrangebylex(key, low, "+", start=0, num=count)
        merged = {m for members in await pipe.execute() for m in members}
        return [Entry.parse(m) for m in sorted(merged)[:count]]

    async def count_newer(self, keys: Sequence[str], after: str) -> int:
        low = f"({after}" if after else "-"
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zlexcount(key, low, "+")
        return int(sum(await pipe.execute()))

    async def muted(self, user_id: int) -> set[int]:
        return {int(m) for m in await self.redis.smembers(muted_key(user_id))}


def _newest(members: Iterable[bytes | str], count: int) -> list[Entry]:
    """The `count` newest distinct entries of merged sources, newest first."""
    return [Entry.parse(m) for m in sorted(set(members), reverse=True)[:count]]
