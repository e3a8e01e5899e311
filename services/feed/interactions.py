"""What people do with posts, as the ranker learns it.

* `InteractionLog`, the `feed-log` consumer group: the interaction log and post
  facts (PostgreSQL, `FeedStore`), each event once via `claim_event` in the
  write's transaction, so redelivery changes nothing.
* `Interactions`: RecordImpressions and SubmitFeedback, validated (tracking
  tokens opened and matched to their posts) into impression and feedback rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import ClassVar

from socialmesh.feed.v1 import feed_pb2
from socialmesh.post.v1 import events_pb2 as post_events

from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.errors import InvalidArgument
from services.kit.validation import Violations

from .peers import Peers
from .store import COMMENT, LIKE, SHARE, UNLIKE, UNSHARE, FeedStore, ImpressionRow
from .timelines import Timelines
from .tracking import TrackingTokens

MAX_IMPRESSIONS = 200
MAX_IMPRESSION_ID = 64
FEEDBACK_KINDS = {
    feed_pb2.FEEDBACK_KIND_NOT_INTERESTED,
    feed_pb2.FEEDBACK_KIND_SHOW_LESS_FROM_AUTHOR,
    feed_pb2.FEEDBACK_KIND_SHOW_MORE,
}

GROUP = "feed-log"
#: The log starts with whatever the streams still hold (their 24 h).
START = Start.EARLIEST


class InteractionLog:
    """The `feed-log` consumer: posts and engagements -> the ranker's tables."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, store: FeedStore) -> None:
        self._store = store

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(post_events.PostCreated, self.on_post_created)
        handlers.on(post_events.PostDeleted, self.on_post_deleted)
        handlers.on(post_events.PostLiked, self.on_liked)
        handlers.on(post_events.PostUnliked, self.on_unliked)
        handlers.on(post_events.PostShared, self.on_shared)
        handlers.on(post_events.PostUnshared, self.on_unshared)
        handlers.on(post_events.CommentCreated, self.on_commented)
        return handlers

    async def on_post_created(self, event: post_events.PostCreated, meta: EventMeta) -> None:
        created = (
            event.create_time.ToDatetime(tzinfo=UTC)
            if event.HasField("create_time")
            else meta.occur_time
        )
        await self._store.log_post(
            meta, event.post_id, event.author_id, int(event.visibility), event.hashtags, created
        )

    async def on_post_deleted(self, event: post_events.PostDeleted, meta: EventMeta) -> None:
        await self._store.log_post_deleted(meta, event.post_id, event.author_id)

    async def on_liked(self, event: post_events.PostLiked, meta: EventMeta) -> None:
        await self._store.log_interaction(
            meta, event.user_id, event.post_id, event.post_author_id, LIKE
        )

    async def on_unliked(self, event: post_events.PostUnliked, meta: EventMeta) -> None:
        await self._store.log_interaction(
            meta, event.user_id, event.post_id, event.post_author_id, UNLIKE
        )

    async def on_shared(self, event: post_events.PostShared, meta: EventMeta) -> None:
        await self._store.log_interaction(
            meta, event.user_id, event.post_id, event.post_author_id, SHARE
        )

    async def on_unshared(self, event: post_events.PostUnshared, meta: EventMeta) -> None:
        await self._store.log_interaction(
            meta, event.user_id, event.post_id, event.post_author_id, UNSHARE
        )

    async def on_commented(self, event: post_events.CommentCreated, meta: EventMeta) -> None:
        await self._store.log_interaction(
            meta, event.author_id, event.post_id, event.post_author_id, COMMENT
        )


class Interactions:
    """Impressions and feedback a viewer reports (RecordImpressions, SubmitFeedback)."""

    def __init__(
        self, store: FeedStore, timelines: Timelines, peers: Peers, tracking: TrackingTokens
    ) -> None:
        self._store = store
        self._timelines = timelines
        self._peers = peers
        self._tracking = tracking

    async def record_impressions(
        self, viewer: int, impressions: Sequence[feed_pb2.Impression]
    ) -> int:
        """Validates every impression (all violations at once), then records them once each."""
        v = Violations()
        v.check(
            0 < len(impressions) <= MAX_IMPRESSIONS,
            "impressions",
            f"give 1 to {MAX_IMPRESSIONS} impressions",
        )
        rows: dict[str, ImpressionRow] = {}
        for i, imp in enumerate(impressions):
            at = f"impressions[{i}]"
            v.check(
                0 < len(imp.impression_id) <= MAX_IMPRESSION_ID,
                f"{at}.impression_id",
                f"1 to {MAX_IMPRESSION_ID} characters",
            )
            v.check(imp.post_id > 0, f"{at}.post_id", "must be a positive id")
            v.check(imp.position >= 0, f"{at}.position", "must not be negative")
            v.check(
                imp.dwell.seconds >= 0 and imp.dwell.nanos >= 0,
                f"{at}.dwell",
                "must not be negative",
            )
            try:
                tracking = self._tracking.open(viewer, imp.tracking_token, f"{at}.tracking_token")
            except InvalidArgument:
                v.add(f"{at}.tracking_token", "invalid or tampered tracking token")
                continue
            if not v.check(
                tracking.post_id == imp.post_id, f"{at}.tracking_token", "belongs to another post"
            ):
                continue
            rows.setdefault(
                imp.impression_id,
                ImpressionRow(
                    impression_id=imp.impression_id,
                    post_id=imp.post_id,
                    surface=int(imp.surface),
                    position=imp.position,
                    served_kind=tracking.kind,
                    served_rank=tracking.position,
                    score=tracking.score,
                    arm=tracking.arm,
                    source=tracking.source,
                    dwell_ms=imp.dwell.seconds * 1000 + imp.dwell.nanos // 1_000_000,
                    display_time=(
                        imp.display_time.ToDatetime(tzinfo=UTC)
                        if imp.HasField("display_time")
                        else None
                    ),
                ),
            )
        v.raise_if_any()
        return await self._store.record_impressions(viewer, list(rows.values()))

    async def submit_feedback(
        self, viewer: int, post_id: int, kind: int, tracking_token: str
    ) -> bool:
        v = Violations()
        v.check(post_id > 0, "post_id", "must be a positive id")
        v.check(kind in FEEDBACK_KINDS, "kind", "name a feedback kind")
        v.raise_if_any()
        if tracking_token:
            tracking = self._tracking.open(viewer, tracking_token, "tracking_token")
            if tracking.post_id != post_id:
                raise InvalidArgument([("tracking_token", "belongs to another post")])
        post = await self._peers.get_post(post_id)  # as the caller may see it
        # First the flag, then the row: see `HomeFeed.feedback`.
        await self._timelines.mark_feedback_giver(viewer)
        return await self._store.add_feedback(viewer, post.post_id, post.author_id, kind)
