"""Feed test support: reading a home feed.

Not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

from socialmesh.feed.v1 import feed_pb2

from .conftest import Person

FOLLOWING = feed_pb2.FEED_KIND_FOLLOWING


async def read(feed, who: Person, kind=FOLLOWING, **fields) -> feed_pb2.GetHomeFeedResponse:
    return await feed.GetHomeFeed(feed_pb2.GetHomeFeedRequest(kind=kind, **fields), metadata=who.md)


def followed(reply: feed_pb2.GetHomeFeedResponse) -> list[int]:
    """The items from the viewer's network (RANKED also suggests posts from outside it)."""
    return [i.post_id for i in reply.items if i.reason != feed_pb2.FEED_REASON_SUGGESTED]
