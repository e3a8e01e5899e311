"""A `FeedPage` becomes a GetHomeFeedResponse: items with reasons and sealed tracking
tokens, page tokens, the posts, and the authors' and reposters' cards."""

from __future__ import annotations

from google.protobuf import duration_pb2
from socialmesh.feed.v1 import feed_pb2

from services.kit.pagination import PageTokens

from .cursors import encode_home
from .pages import FeedPage
from .peers import Peers
from .ranking import features
from .timelines import Entry
from .tracking import Tracking, TrackingTokens

#: A partial page's `retry_after`: a returning user's rebuild (one read of each
#: followee's recent posts, in the background) takes well under this.
PARTIAL_RETRY_SECONDS = 1.0


def reason(entry: Entry, source: str) -> feed_pb2.FeedReason.ValueType:
    """Why an item is shown; which out-of-network source stays in the tracking token."""
    if source and source != features.IN_NETWORK:
        return feed_pb2.FEED_REASON_SUGGESTED
    if entry.sharer_id:
        return feed_pb2.FEED_REASON_SHARED_BY_FOLLOWING
    return feed_pb2.FEED_REASON_FOLLOWING


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(int(seconds * 1000))
    return value


class Presenter:
    def __init__(self, tracking: TrackingTokens, page_tokens: PageTokens, peers: Peers) -> None:
        self._tracking = tracking
        self._page_tokens = page_tokens
        self._peers = peers

    async def home(
        self, viewer: int, page: FeedPage, partial: bool
    ) -> feed_pb2.GetHomeFeedResponse:
        response = self._response(viewer, page, partial)
        people = [e.author_id for e in page.entries] + [
            e.sharer_id for e in page.entries if e.sharer_id
        ]
        if people:
            cards = dict(page.cards)
            missing = [p for p in dict.fromkeys(people) if p not in cards]
            if missing:
                cards.update((c.user_id, c) for c in await self._peers.authors(missing))
            response.authors.extend(cards[p] for p in dict.fromkeys(people) if p in cards)
        return response

    def _response(self, viewer: int, page: FeedPage, partial: bool) -> feed_pb2.GetHomeFeedResponse:
        items = []
        for i, entry in enumerate(page.entries):
            tracking = Tracking(
                post_id=entry.post_id,
                kind=page.kind,
                position=page.first_rank + i,
                score=page.scores[i] if page.scores else 0.0,
                arm=page.arm,
                source=page.sources[i] if page.sources else features.IN_NETWORK,
            )
            items.append(
                feed_pb2.FeedItem(
                    post_id=entry.post_id,
                    reason=reason(entry, page.sources[i] if page.sources else ""),
                    shared_by_user_id=entry.sharer_id or None,  # absent, never "0"
                    tracking_token=self._tracking.seal(viewer, tracking),
                )
            )
        post_ids = list(dict.fromkeys(e.post_id for e in page.entries))
        tokens = self._page_tokens
        return feed_pb2.GetHomeFeedResponse(
            items=items,
            next_page_token=(
                encode_home(tokens, viewer, page.next_cursor) if page.next_cursor else ""
            ),
            newer_page_token=encode_home(tokens, viewer, page.newer_cursor),
            new_item_count=page.new_item_count,
            partial=partial,
            retry_after=duration(PARTIAL_RETRY_SECONDS) if partial else None,
            kind=page.kind,  # type: ignore[arg-type]
            posts=[page.posts[p] for p in post_ids],
        )
