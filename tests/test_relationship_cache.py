"""Viewer relationships are cached where profiles and post visibility are decided
(kit/relcache.py), and every refusal still holds right after the change."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import field_mask_pb2
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

from services.graph.store import GraphStore
from services.kit.relcache import RelationshipCache, relationships_changed

from .conftest import Mesh
from .helpers import code_of

CARD = field_mask_pb2.FieldMask(paths=["user_id", "is_following", "is_private"])


async def _card(users, viewer, user_id: int) -> user_pb2.User | None:
    reply = await users.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(user_ids=[user_id], read_mask=CARD), metadata=viewer.md
    )
    return reply.users[0] if reply.users else None


async def test_every_change_is_seen_by_the_very_next_read(users, graph, posts, redis, make_person):
    fan, idol, locked = await make_person(), await make_person(), await make_person(private=True)
    secret = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="approved followers only")),
        metadata=locked.md,
    )
    card = await _card(users, fan, idol.id)
    assert card is not None and not card.is_following
    assert await redis.exists(f"rel:v1:{fan.id}:{idol.id}")  # cached on the first read
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=fan.md)
    card = await _card(users, fan, idol.id)
    assert card is not None and card.is_following
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=idol.id), metadata=fan.md)
    card = await _card(users, fan, idol.id)
    assert card is not None and not card.is_following

    # A block by the other side hides the blocker at once (cached "not blocked" before).
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=fan.id), metadata=idol.md)
    assert await _card(users, fan, idol.id) is None
    profile = users.GetUser(user_pb2.GetUserRequest(user_id=idol.id), metadata=fan.md)
    assert await code_of(profile) == grpc.StatusCode.NOT_FOUND
    await graph.UnblockUser(graph_pb2.UnblockUserRequest(user_id=fan.id), metadata=idol.md)
    assert await _card(users, fan, idol.id) is not None

    # A private account's posts: refused while not approved (cached), shown right
    # after the approval, refused again right after an unfollow.
    listing = post_pb2.ListUserPostsRequest(user_id=locked.id)
    assert await code_of(posts.ListUserPosts(listing, metadata=fan.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=locked.id), metadata=fan.md)
    assert await code_of(posts.ListUserPosts(listing, metadata=fan.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=locked.md
    )
    shown = await posts.ListUserPosts(listing, metadata=fan.md)
    assert [p.post_id for p in shown.posts] == [secret.post_id]
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=locked.id), metadata=fan.md)
    assert await code_of(posts.ListUserPosts(listing, metadata=fan.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


async def test_a_writer_that_died_before_its_bump_is_corrected_by_the_event(
    mesh: Mesh, users, make_person
):
    """The follow commits (with its event) but the generation is never bumped: the
    user service's consumer of `Followed` bumps it."""
    fan, idol = await make_person(), await make_person()
    card = await _card(users, fan, idol.id)
    assert card is not None and not card.is_following  # cached
    runtime = mesh["graph"].host.runtime
    store = GraphStore(runtime.db, runtime.ids)  # the store alone: nothing bumps
    await store.follow(fan.id, idol.id, needs_approval=False)
    for _ in range(200):  # outbox -> stream -> the user service's consumer
        card = await _card(users, fan, idol.id)
        if card is not None and card.is_following:
            break
        await asyncio.sleep(0.05)
    assert card is not None and card.is_following


async def test_a_load_that_overlaps_a_change_is_never_served(redis):
    first, second = (
        RelationshipCache(redis, "test-relationships:v1"),
        RelationshipCache(redis, "test-relationships:v1"),
    )
    viewer, target = 987_654_321_101, 987_654_321_102
    truth = {"following": False}
    loads: list[list[int]] = []

    async def load_racing_a_change(v: int, ids: list[int]) -> list[graph_pb2.Relationship]:
        loads.append(ids)
        before = truth["following"]
        truth["following"] = True  # a follow commits while we load...
        await relationships_changed(redis, [viewer, target])  # ...and graph bumps both
        return [graph_pb2.Relationship(user_id=target, following=before)]

    async def load(v: int, ids: list[int]) -> list[graph_pb2.Relationship]:
        loads.append(ids)
        return [graph_pb2.Relationship(user_id=i, following=truth["following"]) for i in ids]

    keys = [f"rel:v1:{viewer}:{target}", f"rel-gen:v1:{viewer}", f"rel-gen:v1:{target}"]
    try:
        await redis.delete(*keys)
        stale = await first.get_many(viewer, [target], load_racing_a_change)
        assert not stale[target].following  # this answer raced the change...
        # ...but is never served again, by this instance or another
        assert (await second.get_many(viewer, [target], load))[target].following
        assert (await first.get_many(viewer, [target], load))[target].following
        assert loads == [[target], [target]]  # the fresh value was cached and shared
        assert (first.stats.l2_hits, first.stats.misses) == (1, 1)
        # Every field survives the round trip through the cache.
        full = graph_pb2.Relationship(
            user_id=target, followed_by=True, requested=True, blocking=True, muting=True
        )
        await relationships_changed(redis, [viewer])

        async def load_full(v: int, ids: list[int]) -> list[graph_pb2.Relationship]:
            return [full]

        assert (await first.get_many(viewer, [target], load_full))[target] == full
        assert (await second.get_many(viewer, [target], load))[target] == full  # a hit
    finally:
        await redis.delete(*keys)


def test_every_relationship_event_names_its_pair() -> None:
    """The consumer's table covers every graph event (a new one must say whom it touches)."""
    from services.user.stale_counts import RELATIONSHIP_EVENTS as _RELATIONSHIP_EVENTS

    names = graph_events.DESCRIPTOR.message_types_by_name
    declared = {getattr(graph_events, name) for name in names}
    assert declared == set(_RELATIONSHIP_EVENTS)
    for event_type, pair in _RELATIONSHIP_EVENTS.items():
        fields = [f.name for f in event_type.DESCRIPTOR.fields if f.name.endswith("_id")]
        sample = event_type(**{name: 100 + i for i, name in enumerate(fields)})
        assert set(pair(sample)) <= {100 + i for i in range(len(fields))}
        assert len(set(pair(sample))) == 2, event_type.__name__
