"""Profiles carry the viewer state their buttons need (followed_by, requested,
muting, blocking beside is_following), and never print what they do not know:
the limited view of a private account has no counts (absent, not "0"), and an
account without an avatar has no avatar_media_id."""

from __future__ import annotations

from google.protobuf import field_mask_pb2, json_format
from socialmesh.graph.v1 import graph_pb2
from socialmesh.user.v1 import user_pb2

from .helpers import follow


def _printed(user: user_pb2.User) -> dict:
    """As the edge prints it (always_print_primitive_fields)."""
    return json_format.MessageToDict(user, always_print_fields_with_no_presence=True)


async def _profile(users, viewer, user_id: int) -> user_pb2.User:
    return await users.GetUser(user_pb2.GetUserRequest(user_id=user_id), metadata=viewer.md)


async def test_a_profile_says_followed_by_requested_muting_and_blocking(users, graph, make_person):
    me, fan, private, muted, blocked = (
        await make_person(),
        await make_person(),
        await make_person(private=True),
        await make_person(),
        await make_person(),
    )
    await follow(graph, fan, me)
    await follow(graph, me, private)  # a pending request
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=me.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=me.md)

    back = await _profile(users, me, fan.id)
    assert back.followed_by and not back.is_following  # "Follow back"
    pending = await _profile(users, me, private.id)
    assert pending.requested and not pending.is_following and pending.is_limited_view
    assert (await _profile(users, me, muted.id)).muting
    assert (await _profile(users, me, blocked.id)).blocking
    # The other side of each: the fan sees that I do not follow back.
    mine = await _profile(users, fan, me.id)
    assert mine.is_following and not mine.followed_by and not mine.requested
    # My own profile has no viewer state.
    own = await _profile(users, me, me.id)
    assert not (own.followed_by or own.requested or own.muting or own.blocking)

    batch = await users.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(user_ids=[fan.id, private.id, muted.id]), metadata=me.md
    )
    flags = {u.user_id: (u.followed_by, u.requested, u.muting) for u in batch.users}
    assert flags == {
        fan.id: (True, False, False),
        private.id: (False, True, False),
        muted.id: (False, False, True),
    }


async def test_the_limited_view_prints_no_counts_and_no_avatar_id(users, graph, make_person):
    carol, fan, stranger = await make_person(private=True), await make_person(), await make_person()
    await follow(graph, fan, carol)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=carol.md
    )

    limited = _printed(await _profile(users, stranger, carol.id))
    assert limited["isLimitedView"] is True
    for absent in ("followerCount", "followingCount", "postCount", "avatarMediaId"):
        assert absent not in limited, absent

    full = _printed(await _profile(users, fan, carol.id))
    assert full["followerCount"] == "1" and full["isFollowing"] is True
    assert "avatarMediaId" not in full  # no avatar: absent, not "0"

    # A read mask naming the counts does not turn "unknown" into "0" either.
    masked = await users.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(
            user_ids=[carol.id],
            read_mask=field_mask_pb2.FieldMask(paths=["handle", "follower_count"]),
        ),
        metadata=stranger.md,
    )
    (card,) = masked.users
    assert not card.HasField("follower_count")
