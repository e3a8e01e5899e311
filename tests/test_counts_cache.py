"""Profile counts are cached where they are read (kit/counts.py) and stay exact."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2

from services.kit.counts import Counts, CountsCache, changed

from .conftest import Infra, Mesh


async def _counts(users, user_id: int) -> tuple[int, int, int]:
    user = await users.GetUser(user_pb2.GetUserRequest(user_id=user_id))
    return user.follower_count, user.following_count, user.post_count


async def test_counts_are_served_from_the_cache_and_exact_after_every_change(
    mesh: Mesh, users, make_person, infra: Infra
):
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    posts = post_pb2_grpc.PostServiceStub(mesh["post"].channel)
    fan, idol = await make_person(), await make_person()
    redis = aioredis.Redis.from_url(infra.redis_url)
    try:
        assert await _counts(users, idol.id) == (0, 0, 0)
        assert await redis.exists(f"counts:v1:{idol.id}")  # cached on the first read
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=fan.md)
        assert await _counts(users, idol.id) == (1, 0, 0)
        assert await _counts(users, fan.id) == (0, 1, 0)
        post = await posts.CreatePost(
            post_pb2.CreatePostRequest(post=post_pb2.Post(text="hi")), metadata=idol.md
        )
        assert await _counts(users, idol.id) == (1, 0, 1)
        await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=idol.id), metadata=fan.md)
        assert await _counts(users, idol.id) == (0, 0, 1)
        assert await _counts(users, fan.id) == (0, 0, 0)
        await posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id), metadata=idol.md)
        assert await _counts(users, idol.id) == (0, 0, 0)
        # Blocks remove follows both ways.
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=fan.md)
        assert await _counts(users, idol.id) == (1, 0, 0)
        await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=fan.id), metadata=idol.md)
        assert await _counts(users, idol.id) == (0, 0, 0)
        assert await _counts(users, fan.id) == (0, 0, 0)
        # BatchGetUsers reads through the same cache.
        batch = await users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[idol.id, fan.id]))
        assert [(u.follower_count, u.following_count) for u in batch.users] == [(0, 0), (0, 0)]
    finally:
        await redis.aclose()


async def test_a_deleted_account_leaves_the_counts_of_those_it_followed(
    mesh: Mesh, users, make_person
):
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    fan, idol = await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=fan.md)
    assert await _counts(users, idol.id) == (1, 0, 0)  # cached now
    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=fan.id), metadata=fan.md)
    # graph forgets the account when its user.deleted event arrives (asynchronously)
    for _ in range(100):
        if await _counts(users, idol.id) == (0, 0, 0):
            break
        await asyncio.sleep(0.1)
    assert await _counts(users, idol.id) == (0, 0, 0)


async def test_a_load_that_overlaps_a_change_is_never_served(infra: Infra):
    redis = aioredis.Redis.from_url(infra.redis_url)
    first, second = CountsCache(redis), CountsCache(redis)  # two instances, one Redis
    user_id = 987_654_321_001
    truth = {"followers": 5}
    loads: list[int] = []

    async def load_racing_a_change(ids: list[int]) -> dict[int, Counts]:
        loads.append(len(ids))
        before = truth["followers"]
        truth["followers"] += 1  # a follow commits while we load...
        await changed(redis, [user_id])  # ...and its writer bumps the generation
        return {user_id: Counts(before, 0, 0)}  # what we read before it committed

    async def load(ids: list[int]) -> dict[int, Counts]:
        loads.append(len(ids))
        return {user_id: Counts(truth["followers"], 0, 0)}

    try:
        await redis.delete(f"counts:v1:{user_id}", f"counts-gen:v1:{user_id}")
        stale = await first.get_many([user_id], load_racing_a_change)
        assert stale[user_id].followers == 5  # this answer raced the change...
        # ...but is never served again, by this instance or another
        assert (await second.get_many([user_id], load))[user_id].followers == 6
        assert (await first.get_many([user_id], load))[user_id].followers == 6
        assert loads == [1, 1]  # the fresh value was cached and shared
        assert (first.stats.l2_hits, first.stats.misses) == (1, 1)
        truth["followers"] = 7
        await changed(redis, [user_id])  # a change seen from any instance
        assert (await first.get_many([user_id], load))[user_id].followers == 7
        assert (await second.get_many([user_id], load))[user_id].followers == 7
        assert loads == [1, 1, 1]
    finally:
        await redis.delete(f"counts:v1:{user_id}", f"counts-gen:v1:{user_id}")
        await redis.aclose()
