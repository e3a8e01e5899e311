"""Account cards are cached where post visibility is decided (kit/cards.py): a
profile change or deletion is honoured by the very next read."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import field_mask_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

from services.kit.cards import CardCache, cards_changed
from services.user.store import UserStore

from .conftest import Mesh
from .helpers import code_of, follow


async def _visible(posts, viewer, post_id: int) -> bool:
    reply = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=[post_id]), metadata=viewer.md
    )
    return [p.post_id for p in reply.posts] == [post_id]


async def _update(users, who, **fields) -> None:
    await users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(user_id=who.id, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
        ),
        metadata=who.md,
    )


async def test_profile_changes_are_seen_by_the_very_next_read(
    users, graph, posts, redis, make_person
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, author)
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="public for now")),
        metadata=author.md,
    )
    assert await _visible(posts, stranger, post.post_id)
    assert await redis.exists(f"card:v1:{author.id}")  # cached on the first read

    # Going private hides the posts from strangers at once; followers keep them.
    await _update(users, author, is_private=True)
    assert not await _visible(posts, stranger, post.post_id)
    got = posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=stranger.md)
    assert await code_of(got) == grpc.StatusCode.PERMISSION_DENIED
    assert await _visible(posts, fan, post.post_id)
    await _update(users, author, is_private=False)
    assert await _visible(posts, stranger, post.post_id)

    # A new display name is on the next page's card.
    await _update(users, author, display_name="Renamed")
    reply = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=[post.post_id], include_authors=True),
        metadata=fan.md,
    )
    (card,) = reply.authors
    assert card.display_name == "Renamed" and card.is_following

    # A deleted account's posts are gone for everyone at once.
    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=author.id), metadata=author.md)
    assert not await _visible(posts, fan, post.post_id)
    assert not await _visible(posts, stranger, post.post_id)


async def test_a_writer_that_died_before_its_bump_is_corrected_by_the_event(
    mesh: Mesh, posts, make_person
):
    """The change commits (with its `UserUpdated`) but nothing bumps the card's
    generation: the user service's consumer of the event does."""
    author, stranger = await make_person(), await make_person()
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="hello")), metadata=author.md
    )
    assert await _visible(posts, stranger, post.post_id)  # card cached: public
    runtime = mesh["user"].host.runtime
    store = UserStore(runtime.db, runtime.ids)  # the store alone: nothing bumps
    await store.update_profile(author.id, {"is_private": True})
    for _ in range(200):  # outbox -> stream -> the user service's consumer
        if not await _visible(posts, stranger, post.post_id):
            break
        await asyncio.sleep(0.05)
    assert not await _visible(posts, stranger, post.post_id)


async def test_absent_accounts_are_cached_and_a_load_that_overlaps_a_change_is_not_served(
    redis,
):
    first, second = CardCache(redis, "test-cards:v1"), CardCache(redis, "test-cards:v1")
    live, gone = 987_654_321_201, 987_654_321_202
    truth = {"name": "before"}
    loads: list[list[int]] = []

    async def load_racing_a_change(ids: list[int]) -> list[user_pb2.User]:
        loads.append(ids)
        before = truth["name"]
        truth["name"] = "after"  # a profile change commits while we load...
        await cards_changed(redis, [live])  # ...and the user service bumps
        return [user_pb2.User(user_id=live, display_name=before)]

    async def load(ids: list[int]) -> list[user_pb2.User]:
        loads.append(ids)
        return [user_pb2.User(user_id=i, display_name=truth["name"]) for i in ids if i == live]

    keys = [f"card:v1:{i}" for i in (live, gone)] + [f"card-gen:v1:{i}" for i in (live, gone)]
    try:
        await redis.delete(*keys)
        stale = await first.get_many([live, gone], load_racing_a_change)
        assert stale[live].display_name == "before" and gone not in stale
        # the raced answer is never served; the absent one is, without a load
        again = await second.get_many([live, gone], load)
        assert again[live].display_name == "after" and gone not in again
        assert loads == [[live, gone], [live]]
        assert (await first.get_many([live, gone], load))[live].display_name == "after"
        assert loads == [[live, gone], [live]]
        assert (first.stats.l2_hits, first.stats.misses) == (2, 2)
    finally:
        await redis.delete(*keys)
