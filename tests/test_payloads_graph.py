"""Follower, following and follow-request lists side-load the other accounts'
cards with the caller's viewer state, so a row's name, avatar and button need
no other call; an account that blocks the caller gets no card."""

from __future__ import annotations

from socialmesh.graph.v1 import graph_pb2

from .helpers import follow


async def test_follow_lists_carry_cards_with_the_callers_viewer_state(graph, make_person):
    idol, me, friend, hater, muted = (
        await make_person(),
        await make_person(),
        await make_person(),
        await make_person(),
        await make_person(),
    )
    for fan in (me, friend, hater, muted):
        await follow(graph, fan, idol)
    await follow(graph, me, friend)
    await follow(graph, friend, me)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=me.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=me.id), metadata=hater.md)

    reply = await graph.ListFollowers(
        graph_pb2.ListFollowersRequest(user_id=idol.id), metadata=me.md
    )
    rows = {e.user_id: e for e in reply.followers}
    assert set(rows) == {me.id, friend.id, hater.id, muted.id}
    assert rows[friend.id].user.handle == friend.handle
    assert rows[friend.id].user.is_following and rows[friend.id].user.followed_by
    assert rows[muted.id].user.muting and not rows[muted.id].user.is_following
    assert rows[me.id].user.handle == me.handle  # my own row: my card, no viewer state
    assert not rows[hater.id].HasField("user")  # blocks me: no card

    following = await graph.ListFollowing(
        graph_pb2.ListFollowingRequest(user_id=me.id), metadata=friend.md
    )
    cards = {e.user_id: e.user for e in following.following}
    assert cards[idol.id].handle == idol.handle and cards[idol.id].is_following
    assert cards[friend.id].user_id == friend.id


async def test_follow_requests_carry_the_requesters_cards(graph, make_person):
    private, asker, friend = (
        await make_person(private=True),
        await make_person(),
        await make_person(),
    )
    await follow(graph, private, friend)  # the private account follows one of them
    await follow(graph, asker, private)
    await follow(graph, friend, private)

    reply = await graph.ListFollowRequests(
        graph_pb2.ListFollowRequestsRequest(), metadata=private.md
    )
    cards = {r.requester_id: r.requester for r in reply.follow_requests}
    assert cards[asker.id].handle == asker.handle and not cards[asker.id].is_following
    assert cards[friend.id].is_following  # already followed: no "Follow back" needed
