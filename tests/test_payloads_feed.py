"""The home feed: a post of someone followed has no shared_by_user_id at all
(absent, never "0"), a repost names its reposter, and every post carries its
author's card like any other post read."""

from __future__ import annotations

from socialmesh.feed.v1 import feed_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2

from .feed_support import read
from .helpers import eventually, follow, publish


async def test_feed_items_name_a_reposter_only_when_there_is_one(feed, posts, graph, make_person):
    writer, sharer, fan = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, sharer)  # only the reposter
    await read(feed, fan)
    own = await publish(posts, writer, "straight from the writer")
    other = await publish(posts, sharer, "the sharer's own")
    await posts.SharePost(post_pb2.SharePostRequest(post_id=own.post_id), metadata=sharer.md)

    async def settled() -> bool:
        reply = await read(feed, fan)
        return len(reply.items) == 2

    await eventually(settled)
    reply = await read(feed, fan)
    items = [
        (i.post_id, i.HasField("shared_by_user_id") and i.shared_by_user_id) for i in reply.items
    ]
    assert sorted(items) == sorted([(own.post_id, sharer.id), (other.post_id, False)])
    cards = {p.post_id: p.author for p in reply.posts}
    assert cards[own.post_id].handle == writer.handle and not cards[own.post_id].is_following
    assert cards[other.post_id].handle == sharer.handle and cards[other.post_id].is_following
    assert {a.user_id for a in reply.authors} == {writer.id, sharer.id}
    for author in reply.authors:
        assert not author.HasField("follower_count")  # a card knows no counts


async def test_suggested_cards_show_real_follower_counts_unless_the_profile_would_not(
    feed, graph, make_person
):
    me, b, e = await make_person(), await make_person(), await make_person()
    public, private = await make_person(), await make_person(private=True)
    for fan, idol in ((me, b), (me, e), (b, public), (e, public), (b, private), (e, private)):
        await follow(graph, fan, idol)
    for requester in (b, e):
        await graph.AcceptFollowRequest(
            graph_pb2.AcceptFollowRequestRequest(requester_id=requester.id), metadata=private.md
        )
    reply = await feed.ListSuggestedUsers(
        feed_pb2.ListSuggestedUsersRequest(page_size=10), metadata=me.md
    )
    cards = {s.user.user_id: s.user for s in reply.users}
    assert cards[public.id].follower_count == 2
    assert cards[private.id].is_limited_view and not cards[private.id].HasField("follower_count")
