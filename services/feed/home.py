"""The home feed's read pipeline: open the timeline, rebuild it if cold, cut, filter, hydrate.

A page is cut from the merged sets (the viewer's timeline, followed above-threshold
authors' sets) by member cursors, filtered by mutes and feedback, and hydrated
with one BatchGetPosts(include_authors) under the viewer's own token, so the post
service drops whatever the viewer may not see (FOLLOWERS posts of accounts they
do not follow, private accounts, blocks, deleted posts) and returns the authors'
cards with the posts. RANKED pages come from `ranking/session.py`; when ranking
raises or times out the viewer gets a FOLLOWING page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

from services.kit.errors import InvalidArgument

from .config import FeedConfig
from .cursors import FOLLOWING, RANKED, HomeCursor, Newer, Older, RankedAt
from .pages import FeedPage, allowed
from .peers import Peers
from .ranking.session import RankedSessions
from .store import Feedback, FeedStore
from .timelines import CELEBRITIES, Entry, ReadState, Timelines, celebs_key

log = logging.getLogger("socialmesh.feed")

#: A page drops what the viewer may not see; it reads further at most this often.
READ_ROUNDS = 3


@dataclass
class _Cut:
    """What `_cut` walked: the kept entries and where it stopped."""

    entries: list[Entry] = field(default_factory=list)
    posts: dict[int, post_pb2.Post] = field(default_factory=dict)
    cards: dict[int, user_pb2.User] = field(default_factory=dict)
    first_examined: str = ""
    last_examined: str = ""
    more: bool = False


class HomeFeed:
    """GetHomeFeed's pipeline, from a cursor to a `FeedPage` (and whether it is partial)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        timelines: Timelines,
        store: FeedStore,
        peers: Peers,
        config: Callable[[], FeedConfig],
        ranked: RankedSessions,
    ) -> None:
        self._redis = redis
        self._timelines = timelines
        self._store = store
        self._peers = peers
        self._config = config
        self._ranked = ranked

    async def read(
        self, viewer: int, kind: int, cursor: HomeCursor | None, size: int
    ) -> tuple[FeedPage, bool]:
        """One page of tab `kind`, and whether the timeline was cold (rebuilt just now)."""
        # A FOLLOWING page older than its cursor: its first batch comes with the prelude.
        first = None
        if kind == FOLLOWING and not isinstance(cursor, Newer):
            first = (cursor.before if isinstance(cursor, Older) else "", size * 2)
        state = await self._timelines.open_read(viewer, first)
        partial = not state.built
        if partial:
            await self.rebuild(viewer)
            state = await self._timelines.open_read(viewer, first)  # the rebuild's sources
        feedback = await self.feedback(viewer, state, rebuilt=partial)
        keys, muted = state.sources, state.muted
        page: FeedPage | None = None
        if kind == RANKED and not isinstance(cursor, Newer):
            try:
                page = await self._ranked.page(
                    viewer,
                    keys,
                    cursor if isinstance(cursor, RankedAt) else None,
                    size,
                    muted,
                    feedback,
                )
            except InvalidArgument:
                raise
            except Exception:  # ranking must never take the feed down
                log.warning("ranking failed for %d; serving FOLLOWING", viewer, exc_info=True)
                cursor = None
        if page is None:
            following = cursor if isinstance(cursor, Older | Newer) else None
            page = await self.following(
                viewer, keys, following, size, muted, feedback.hidden_posts, state.batch
            )
        return page, partial

    async def rebuild(self, viewer: int) -> None:
        """Refills a timeline from graph and post (a returning or new reader)."""
        followees = await self._peers.following(viewer)
        redis = self._redis
        flags = (
            await redis.smismember(CELEBRITIES, [str(f) for f in followees]) if followees else []
        )
        celebs = [f for f, is_celeb in zip(followees, flags, strict=True) if is_celeb]
        ordinary = [f for f, is_celeb in zip(followees, flags, strict=True) if not is_celeb]
        pipe = redis.pipeline(transaction=True)
        pipe.delete(celebs_key(viewer))
        if celebs:
            pipe.sadd(celebs_key(viewer), *(str(c) for c in celebs))
        await pipe.execute()
        entries = await self._peers.author_posts(
            [viewer, *ordinary], since_days=self._config().active_days
        )
        await self._timelines.push([viewer], entries)
        await self._timelines.mark_built(viewer)

    async def feedback(self, viewer: int, state: ReadState, *, rebuilt: bool) -> Feedback:
        """The viewer's feedback; a query only for viewers flagged as having given any.

        The flag is set before a row is written (a flag without rows costs one
        query, never a lost row), and re-derived at every rebuild, so a flushed
        Redis (which also loses the timeline) re-learns it.
        """
        if not (state.gave_feedback or rebuilt):
            return Feedback()
        feedback = await self._store.feedback(viewer)
        if rebuilt and not state.gave_feedback and feedback.any():
            await self._timelines.mark_feedback_giver(viewer)
        return feedback

    async def following(
        self,
        viewer: int,
        keys: Sequence[str],
        cursor: Older | Newer | None,
        size: int,
        muted: Set[int],
        hidden: Set[int],
        first_batch: list[Entry] | None = None,
    ) -> FeedPage:
        """A FOLLOWING page: older than the cursor (or the top), or newer than it.

        `first_batch`: what `older` returns from the cursor, when already read."""
        tl = self._timelines
        if isinstance(cursor, Newer):  # newer_page_token
            after = cursor.after
            page = await self._cut(keys, after, size, muted, hidden, newer=True)
            top = page.last_examined or after
            page.entries.reverse()
            return FeedPage(
                entries=page.entries,
                posts=page.posts,
                cards=page.cards,
                kind=FOLLOWING,
                next_cursor=None,
                newer_cursor=Newer(top),
                new_item_count=await tl.count_newer(keys, top),
            )
        before = cursor.before if cursor is not None else ""
        session_top = cursor.top if cursor is not None else ""
        page = await self._cut(keys, before, size, muted, hidden, newer=False, first=first_batch)
        if cursor is None:
            session_top = page.first_examined
        return FeedPage(
            entries=page.entries,
            posts=page.posts,
            cards=page.cards,
            kind=FOLLOWING,
            next_cursor=Older(page.last_examined, session_top) if page.more else None,
            newer_cursor=Newer(session_top),
            new_item_count=await tl.count_newer(keys, session_top) if cursor is not None else 0,
        )

    async def _cut(
        self,
        keys: Sequence[str],
        cursor: str,
        size: int,
        muted: Set[int],
        hidden: Set[int],
        *,
        newer: bool,
        first: list[Entry] | None = None,
    ) -> _Cut:
        """Walks the merged sets from `cursor`, keeping what the viewer may see."""
        cut = _Cut()
        seen: set[int] = set()
        for _ in range(READ_ROUNDS):
            want = (size - len(cut.entries)) * 2
            if first is not None:  # read with the prelude (`Timelines.open_read`)
                batch, first = first, None
            elif newer:
                batch = await self._timelines.newer(keys, cursor, want)
            else:
                batch = await self._timelines.older(keys, cursor or None, want)
            if not batch:
                cut.more = False
                return cut
            if not cut.first_examined:
                cut.first_examined = batch[0].member
            kept = {e.member: e for e in batch if allowed(e, muted, hidden)}
            posts: dict[int, post_pb2.Post] = {}
            if kept:
                # The authors' cards come with the posts (one call: post reads them
                # where it decides visibility); reposters' cards are added at the end.
                posts = await self._peers.hydrate([e.post_id for e in kept.values()], cut.cards)
            examined = 0
            for entry in batch:
                if len(cut.entries) == size:
                    break
                examined += 1
                cursor = cut.last_examined = entry.member
                if entry.post_id in posts and entry.post_id not in seen and entry.member in kept:
                    seen.add(entry.post_id)
                    cut.entries.append(entry)
                    cut.posts[entry.post_id] = posts[entry.post_id]
            if len(cut.entries) == size:
                cut.more = True
                return cut
            if len(batch) < want:  # every source is exhausted
                cut.more = False
                return cut
        cut.more = True
        return cut
