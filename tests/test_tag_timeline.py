"""Hashtag timelines (`GET /v1/tags/{tag}/posts`): newest first, visibility inside the query.

Real user, graph and post services over gRPC with real PostgreSQL and Redis. Each
rule is proven from the forbidden viewer's side with a tag only the test uses.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2

from services.kit.ratelimit import RateLimiter
from services.post.search import PostSearch

from .conftest import Mesh, Person
from .helpers import eventually, publish, violations


def tag() -> str:
    return "t" + uuid.uuid4().hex[:10]


async def private_projected(mesh: Mesh, user_id: int) -> bool:
    return bool(
        await mesh["post"].host.runtime.db.primary.fetchval(
            "SELECT is_private FROM post.search_authors WHERE user_id = $1", user_id
        )
    )


async def timeline(
    posts, tag_name: str, viewer: Person | None = None, page_token: str = "", **fields
) -> list[int]:
    """Every page of the timeline from `page_token` on, in order."""
    ids: list[int] = []
    token = page_token
    while True:
        reply = await posts.ListTagPosts(
            post_pb2.ListTagPostsRequest(tag=tag_name, page_token=token, **fields),
            metadata=viewer.md if viewer else None,
        )
        ids += [p.post_id for p in reply.posts]
        token = reply.next_page_token
        if not token:
            return ids


async def sql_timeline(mesh: Mesh, tag_name: str, viewer: Person | None) -> list[int]:
    """The timeline's SQL alone, without the service's re-check of the authors."""
    rt = mesh["post"].host.runtime
    search = PostSearch(
        rt.db, rt.ids, rt.page_tokens, RateLimiter(rt.redis, "t", limit=1, window_seconds=1)
    )
    rows, _ = await search.tag_posts(
        post_pb2.ListTagPostsRequest(tag=tag_name, page_size=100), viewer.id if viewer else None
    )
    return [r.post_id for r in rows]


async def test_a_tag_timeline_is_newest_first_in_stable_pages(posts, make_person):
    author = await make_person()
    t = tag()
    made = [await publish(posts, author, f"number {i} #{t}") for i in range(7)]
    await publish(posts, author, "no tag here")
    expected = [p.post_id for p in reversed(made)]
    assert await timeline(posts, t) == expected
    # Case and a leading '#' do not matter.
    assert await timeline(posts, f"#{t.upper()}", page_size=3) == expected

    # Posting while paging neither repeats nor skips: the new post sits above page 1.
    first = await posts.ListTagPosts(post_pb2.ListTagPostsRequest(tag=t, page_size=3))
    newer = await publish(posts, author, f"late #{t}")
    rest = await timeline(posts, t, page_token=first.next_page_token, page_size=3)
    assert [p.post_id for p in first.posts] + rest == expected
    assert (await timeline(posts, t))[0] == newer.post_id

    # A deleted post leaves the timeline.
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=newer.post_id), metadata=author.md)
    assert await timeline(posts, t) == expected


async def test_followers_only_and_private_posts_reach_approved_followers_only(
    posts, graph, make_person, mesh
):
    author, private_author = await make_person(), await make_person(private=True)
    fan, stranger = await make_person(), await make_person()
    t = tag()
    members = await publish(
        posts, author, f"members only #{t}", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    hidden = await publish(posts, private_author, f"a private account #{t}")
    public = await publish(posts, author, f"for everyone #{t}")
    for followee in (author, private_author):
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=followee.id), metadata=fan.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=private_author.md
    )

    async def fan_sees_all() -> bool:
        return await timeline(posts, t, fan) == [public.post_id, hidden.post_id, members.post_id]

    await eventually(fan_sees_all)

    await eventually(lambda: private_projected(mesh, private_author.id))
    for viewer in (stranger, None):
        assert await timeline(posts, t, viewer) == [public.post_id]
        assert await sql_timeline(mesh, t, viewer) == [public.post_id]
    assert await timeline(posts, t, author) == [public.post_id, members.post_id]


@pytest.mark.parametrize("direction", ["author_blocks_viewer", "viewer_blocks_author"])
async def test_nothing_crosses_a_block(posts, graph, make_person, mesh, direction):
    author, viewer = await make_person(), await make_person()
    t = tag()
    post = await publish(posts, author, f"#{t}")
    assert await timeline(posts, t, viewer) == [post.post_id]
    blocker, blocked = (author, viewer) if direction == "author_blocks_viewer" else (viewer, author)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md)

    async def hidden_in_sql() -> bool:
        return await sql_timeline(mesh, t, viewer) == []

    await eventually(hidden_in_sql)
    assert await timeline(posts, t, viewer) == []
    assert await timeline(posts, t) == [post.post_id]  # others still see it


@pytest.mark.parametrize(
    ("value", "field"),
    [("", "tag"), ("#", "tag"), ("two words", "tag"), ("a" * 101, "tag"), ("x\x00y", "tag")],
)
async def test_a_bad_tag_is_a_400_naming_it(posts, value, field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await posts.ListTagPosts(post_pb2.ListTagPostsRequest(tag=value))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err.value)


async def test_a_page_token_is_bound_to_its_tag_and_viewer(posts, make_person):
    author, other = await make_person(), await make_person()
    t = tag()
    for i in range(3):
        await publish(posts, author, f"{i} #{t}")
    first = await posts.ListTagPosts(post_pb2.ListTagPostsRequest(tag=t, page_size=1))
    assert first.next_page_token
    for request, md in (
        (post_pb2.ListTagPostsRequest(tag=tag(), page_token=first.next_page_token), None),
        (post_pb2.ListTagPostsRequest(tag=t, page_token=first.next_page_token), other.md),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await posts.ListTagPosts(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pageToken" in violations(err.value)
