"""The post service over real gRPC (with the real user and graph services), real PG/Redis."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from google.protobuf import timestamp_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2

from services.kit.events import recent_events

from .conftest import Infra, Mesh, Person
from .helpers import code_of, follow, violations


async def publish(posts, author: Person, text: str = "hello", **fields) -> post_pb2.Post:
    request_id = fields.pop("request_id", "")
    return await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text=text, **fields), request_id=request_id),
        metadata=author.md,
    )


async def test_create_extracts_hashtags_and_mentions(posts, make_person):
    author, friend = await make_person(), await make_person()
    post = await publish(
        posts, author, f"Hi @{friend.handle} and @nobody_here_xyz! #Launch #launch #día"
    )
    assert post.author_id == author.id and post.visibility == post_pb2.VISIBILITY_PUBLIC
    assert list(post.hashtags) == ["launch", "día"]
    assert list(post.mention_ids) == [friend.id]  # unknown handles stay text
    assert "@nobody_here_xyz" in post.text


async def test_text_and_attachment_validation_names_the_field(posts, make_person):
    author = await make_person()
    cases = [
        ({"text": "x" * 5001}, "post.text"),
        ({"text": ""}, "post.text"),
        ({"text": "hi", "media_ids": [1, 2, 3, 4, 5]}, "post.mediaIds"),
        ({"text": "hi", "media_ids": [7, 7]}, "post.mediaIds"),
    ]
    for fields, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await posts.CreatePost(
                post_pb2.CreatePostRequest(post=post_pb2.Post(**fields)), metadata=author.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value), fields
    # 5,000 characters counted as characters, not bytes.
    ok = await publish(posts, author, "é" * 5000)
    assert len(ok.text) == 5000


async def test_batch_get_with_authors_returns_cards_only_for_what_the_viewer_sees(
    posts, graph, make_person
):
    viewer, friend, locked, blocker = (
        await make_person(),
        await make_person(),
        await make_person(private=True),
        await make_person(),
    )
    await follow(graph, viewer, friend)
    own = await publish(posts, viewer, "mine")
    friends = await publish(
        posts, friend, "for followers", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    hidden = await publish(posts, locked, "private account")
    blocked = await publish(posts, blocker, "public, but blocks the viewer")
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=viewer.id), metadata=blocker.md)
    ids = [own.post_id, friends.post_id, hidden.post_id, blocked.post_id]

    reply = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=ids, include_authors=True), metadata=viewer.md
    )
    assert [p.post_id for p in reply.posts] == [own.post_id, friends.post_id]
    cards = {c.user_id: c for c in reply.authors}
    assert set(cards) == {viewer.id, friend.id}  # none for authors of unseen posts
    assert cards[friend.id].handle == friend.handle and cards[friend.id].is_following
    assert cards[viewer.id].handle == viewer.handle
    assert not cards[friend.id].email  # a card, not the profile

    plain = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=ids), metadata=viewer.md
    )
    assert [p.post_id for p in plain.posts] == [own.post_id, friends.post_id]
    assert not plain.authors  # only when asked for

    anonymous = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=ids, include_authors=True)
    )
    assert [p.post_id for p in anonymous.posts] == [own.post_id, blocked.post_id]
    assert {c.user_id for c in anonymous.authors} == {viewer.id, blocker.id}
    assert not any(c.is_following for c in anonymous.authors)


async def test_concurrent_creates_with_one_request_id_make_one_post(
    posts, make_person, mesh, infra: Infra
):
    author = await make_person()
    replies = await asyncio.gather(
        *(publish(posts, author, "once", request_id="req-123") for _ in range(20))
    )
    assert len({r.post_id for r in replies}) == 1
    db = mesh["post"].host.runtime.db
    n = await db.primary.fetchval("SELECT count(*) FROM post.posts WHERE author_id = $1", author.id)
    assert n == 1
    counts = await posts.BatchGetPostCounts(
        post_pb2.BatchGetPostCountsRequest(user_ids=[author.id]), metadata=infra.service_auth()
    )
    assert counts.counts[0].post_count == 1


async def test_twenty_concurrent_likes_count_once(posts, make_person):
    author, fan = await make_person(), await make_person()
    post = await publish(posts, author)
    await asyncio.gather(
        *(
            posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=fan.md)
            for _ in range(20)
        )
    )
    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=fan.md)
    assert seen.like_count == 1 and seen.is_liked
    other_view = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))
    assert other_view.like_count == 1 and not other_view.is_liked
    await posts.UnlikePost(post_pb2.UnlikePostRequest(post_id=post.post_id), metadata=fan.md)
    await posts.UnlikePost(post_pb2.UnlikePostRequest(post_id=post.post_id), metadata=fan.md)
    assert (await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))).like_count == 0


async def test_visibility_from_author_follower_and_stranger(posts, graph, make_person):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, author)
    public = await publish(posts, author, "for everyone")
    followers_only = await publish(
        posts, author, "friends", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    for viewer, expected in (
        (author, grpc.StatusCode.OK),
        (fan, grpc.StatusCode.OK),
        (stranger, grpc.StatusCode.PERMISSION_DENIED),
    ):
        got = await code_of(
            posts.GetPost(
                post_pb2.GetPostRequest(post_id=followers_only.post_id), metadata=viewer.md
            )
        )
        assert got == expected, viewer
    assert await code_of(
        posts.GetPost(post_pb2.GetPostRequest(post_id=followers_only.post_id))
    ) == (grpc.StatusCode.PERMISSION_DENIED)
    batch = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=[followers_only.post_id, public.post_id]),
        metadata=stranger.md,
    )
    assert [p.post_id for p in batch.posts] == [public.post_id]
    timeline = await posts.ListUserPosts(
        post_pb2.ListUserPostsRequest(user_id=author.id), metadata=stranger.md
    )
    assert [p.post_id for p in timeline.posts] == [public.post_id]
    timeline = await posts.ListUserPosts(
        post_pb2.ListUserPostsRequest(user_id=author.id), metadata=fan.md
    )
    assert [p.post_id for p in timeline.posts] == [followers_only.post_id, public.post_id]
    # A stranger cannot interact with what they cannot see.
    assert (
        await code_of(
            posts.LikePost(
                post_pb2.LikePostRequest(post_id=followers_only.post_id), metadata=stranger.md
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )


async def test_private_author_and_blocks(posts, graph, make_person):
    author, fan, stranger = (
        await make_person(private=True),
        await make_person(),
        await make_person(),
    )
    post = await publish(posts, author, "private account post")
    await follow(graph, fan, author)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=author.md
    )
    assert (
        await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=fan.md)
    ).text
    assert (
        await code_of(
            posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=stranger.md)
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        await code_of(
            posts.ListUserPosts(
                post_pb2.ListUserPostsRequest(user_id=author.id), metadata=stranger.md
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=fan.id), metadata=author.md)
    assert (
        await code_of(posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=fan.md))
        == grpc.StatusCode.NOT_FOUND
    )


async def test_delete_post_is_author_only_and_hides_everywhere(posts, users, make_person):
    author, other = await make_person(), await make_person()
    post = await publish(posts, author)
    await publish(posts, author, "second")
    assert (await users.GetUser(user_pb2.GetUserRequest(user_id=author.id))).post_count == 2
    assert (
        await code_of(
            posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id), metadata=other.md)
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id), metadata=author.md)
    assert await code_of(posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))) == (
        grpc.StatusCode.NOT_FOUND
    )
    timeline = await posts.ListUserPosts(post_pb2.ListUserPostsRequest(user_id=author.id))
    assert post.post_id not in [p.post_id for p in timeline.posts]
    assert (await users.GetUser(user_pb2.GetUserRequest(user_id=author.id))).post_count == 1


async def test_comments_order_pagination_and_deletion_rights(posts, make_person):
    author, commenter, stranger = await make_person(), await make_person(), await make_person()
    post = await publish(posts, author)
    made = []
    for i in range(5):
        made.append(
            await posts.CreateComment(
                post_pb2.CreateCommentRequest(
                    post_id=post.post_id, comment=post_pb2.Comment(text=f"c{i}")
                ),
                metadata=commenter.md,
            )
        )
    listed, token = [], ""
    while True:
        page = await posts.ListComments(
            post_pb2.ListCommentsRequest(post_id=post.post_id, page_size=2, page_token=token)
        )
        listed += [c.text for c in page.comments]
        token = page.next_page_token
        if not token:
            break
    assert listed == ["c0", "c1", "c2", "c3", "c4"]  # oldest first
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await posts.CreateComment(
            post_pb2.CreateCommentRequest(
                post_id=post.post_id, comment=post_pb2.Comment(text="x" * 2001)
            ),
            metadata=commenter.md,
        )
    assert "comment.text" in violations(err.value)
    delete = post_pb2.DeleteCommentRequest
    assert (
        await code_of(
            posts.DeleteComment(
                delete(post_id=post.post_id, comment_id=made[0].comment_id), metadata=stranger.md
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    await posts.DeleteComment(
        delete(post_id=post.post_id, comment_id=made[0].comment_id), metadata=commenter.md
    )
    await posts.DeleteComment(
        delete(post_id=post.post_id, comment_id=made[1].comment_id), metadata=author.md
    )
    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))
    assert seen.comment_count == 3


async def test_saves_are_private_and_listed_newest_first(posts, make_person):
    author, saver, other = await make_person(), await make_person(), await make_person()
    first, second = await publish(posts, author, "one"), await publish(posts, author, "two")
    for p in (first, second, first):
        await posts.SavePost(post_pb2.SavePostRequest(post_id=p.post_id), metadata=saver.md)
    mine = await posts.ListSavedPosts(post_pb2.ListSavedPostsRequest(), metadata=saver.md)
    assert [p.post_id for p in mine.posts] == [second.post_id, first.post_id]
    assert all(p.is_saved for p in mine.posts)
    theirs = await posts.ListSavedPosts(post_pb2.ListSavedPostsRequest(), metadata=other.md)
    assert list(theirs.posts) == []
    assert await code_of(posts.ListSavedPosts(post_pb2.ListSavedPostsRequest())) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_share_is_idempotent_and_unshare_allowed(posts, make_person):
    author, fan = await make_person(), await make_person()
    post = await publish(posts, author)
    for _ in range(2):
        reply = await posts.SharePost(
            post_pb2.SharePostRequest(post_id=post.post_id), metadata=fan.md
        )
    assert reply.post.share_count == 1 and reply.post.is_shared
    reply = await posts.UnsharePost(
        post_pb2.UnsharePostRequest(post_id=post.post_id), metadata=fan.md
    )
    assert reply.post.share_count == 0 and not reply.post.is_shared


async def test_counters_equal_a_recount_after_random_interleaving(posts, make_person, mesh):
    author = await make_person()
    fans = [await make_person() for _ in range(6)]
    targets = [await publish(posts, author, f"p{i}") for i in range(3)]
    rng = random.Random(11)
    actions = [
        ("like", post_pb2.LikePostRequest, posts.LikePost),
        ("unlike", post_pb2.UnlikePostRequest, posts.UnlikePost),
        ("share", post_pb2.SharePostRequest, posts.SharePost),
        ("unshare", post_pb2.UnsharePostRequest, posts.UnsharePost),
    ]

    async def op() -> None:
        fan, target = rng.choice(fans), rng.choice(targets)
        kind = rng.randrange(5)
        if kind == 4:
            await posts.CreateComment(
                post_pb2.CreateCommentRequest(
                    post_id=target.post_id, comment=post_pb2.Comment(text="hi")
                ),
                metadata=fan.md,
            )
            return
        _, request, call = actions[kind]
        await call(request(post_id=target.post_id), metadata=fan.md)

    for _ in range(10):
        await asyncio.gather(*(op() for _ in range(12)))
    db = mesh["post"].host.runtime.db
    rows = await db.primary.fetch(
        """SELECT p.like_count, p.share_count, p.comment_count,
                  (SELECT count(*) FROM post.likes l WHERE l.post_id = p.post_id) AS likes,
                  (SELECT count(*) FROM post.shares s WHERE s.post_id = p.post_id) AS shares,
                  (SELECT count(*) FROM post.comments c
                    WHERE c.post_id = p.post_id AND c.deleted_at IS NULL) AS comments
           FROM post.posts p WHERE p.post_id = ANY($1::bigint[])""",
        [t.post_id for t in targets],
    )
    assert all(
        (r["like_count"], r["share_count"], r["comment_count"])
        == (r["likes"], r["shares"], r["comments"])
        for r in rows
    )
    assert sum(r["likes"] + r["comments"] for r in rows) > 0


async def test_batch_get_validates_and_keeps_order(posts, make_person):
    author = await make_person()
    made = [await publish(posts, author, f"b{i}") for i in range(3)]
    ids = [made[2].post_id, 999, made[0].post_id]
    reply = await posts.BatchGetPosts(post_pb2.BatchGetPostsRequest(post_ids=ids))
    assert [p.post_id for p in reply.posts] == [made[2].post_id, made[0].post_id]
    for bad in ([], list(range(1, 502))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await posts.BatchGetPosts(post_pb2.BatchGetPostsRequest(post_ids=bad))
        assert "postIds" in violations(err.value)


async def test_post_counts_are_internal_and_take_the_documented_thousand_ids(
    posts, make_person, infra: Infra
):
    author = await make_person()
    await publish(posts, author)
    request = post_pb2.BatchGetPostCountsRequest(user_ids=[author.id])
    assert await code_of(posts.BatchGetPostCounts(request)) == grpc.StatusCode.UNAUTHENTICATED
    for metadata in (author.md, infra.service_auth("user")):
        reply = await posts.BatchGetPostCounts(request, metadata=metadata)
        assert [(c.user_id, c.post_count) for c in reply.counts] == [(author.id, 1)]
    thousand = list(range(1, 1001))
    reply = await posts.BatchGetPostCounts(
        post_pb2.BatchGetPostCountsRequest(user_ids=thousand), metadata=infra.service_auth()
    )
    assert len(reply.counts) == 1000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await posts.BatchGetPostCounts(
            post_pb2.BatchGetPostCountsRequest(user_ids=[*thousand, 1001]),
            metadata=infra.service_auth(),
        )
    assert "userIds" in violations(err.value)


class CountingReader:
    """Counts the queries a store sends to the read pool."""

    def __init__(self, pool) -> None:
        self._pool = pool
        self.queries = 0

    async def fetch(self, *args, **kwargs):
        self.queries += 1
        return await self._pool.fetch(*args, **kwargs)


async def test_batch_list_author_posts_newest_first_per_author_in_one_query(
    posts, make_person, infra: Infra, mesh: Mesh, monkeypatch
):
    a, b, quiet = await make_person(), await make_person(), await make_person()
    a_posts = [
        await publish(posts, a, "a0"),
        await publish(posts, a, "a1", visibility=post_pb2.VISIBILITY_FOLLOWERS),
        await publish(posts, a, "a2"),
    ]
    b_posts = [await publish(posts, b, "b0"), await publish(posts, b, "b1")]
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=b_posts[1].post_id), metadata=b.md)
    feed = infra.service_auth("feed")
    db = mesh["post"].host.runtime.db
    reader = CountingReader(db.reader())
    monkeypatch.setattr(db, "reader", lambda: reader)
    reply = await posts.BatchListAuthorPosts(
        post_pb2.BatchListAuthorPostsRequest(
            author_ids=[b.id, quiet.id, a.id, b.id], per_author_limit=2
        ),
        metadata=feed,
    )
    assert reader.queries == 1  # one query for all authors, never one per author
    monkeypatch.undo()
    assert [(r.author_id, r.post_id) for r in reply.posts] == [
        (b.id, b_posts[0].post_id),  # the deleted one is gone
        (a.id, a_posts[2].post_id),  # newest first, at most two per author
        (a.id, a_posts[1].post_id),
    ]
    assert [r.visibility for r in reply.posts] == [
        post_pb2.VISIBILITY_PUBLIC,
        post_pb2.VISIBILITY_PUBLIC,
        post_pb2.VISIBILITY_FOLLOWERS,  # services see every post, with its visibility
    ]
    assert all(r.create_time.seconds > 0 for r in reply.posts)

    async def ids(**fields) -> list[int]:
        found = await posts.BatchListAuthorPosts(
            post_pb2.BatchListAuthorPostsRequest(author_ids=[a.id], **fields), metadata=feed
        )
        return [r.post_id for r in found.posts]

    newest_first = [p.post_id for p in reversed(a_posts)]
    assert await ids() == newest_first  # default limit (20) covers all three
    assert await ids(min_post_id=a_posts[0].post_id) == newest_first[:2]
    created = a_posts[1].create_time
    assert await ids(since_time=created) == newest_first[:2]
    future = timestamp_pb2.Timestamp(seconds=created.seconds + 3600)
    assert await ids(since_time=future) == []
    assert await ids(per_author_limit=1000) == newest_first  # clamped to 200, no error

    # Services only; every field validated.
    request = post_pb2.BatchListAuthorPostsRequest(author_ids=[a.id])
    assert await code_of(posts.BatchListAuthorPosts(request, metadata=a.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(posts.BatchListAuthorPosts(request)) == grpc.StatusCode.UNAUTHENTICATED
    bad_time = timestamp_pb2.Timestamp(seconds=0, nanos=-1)
    for fields, field in (
        ({"author_ids": []}, "authorIds"),
        ({"author_ids": list(range(1, 1002))}, "authorIds"),
        ({"author_ids": [0]}, "authorIds"),
        ({"author_ids": [a.id], "min_post_id": -1}, "minPostId"),
        ({"author_ids": [a.id], "per_author_limit": -1}, "perAuthorLimit"),
        ({"author_ids": [a.id], "since_time": bad_time}, "sinceTime"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await posts.BatchListAuthorPosts(
                post_pb2.BatchListAuthorPostsRequest(**fields), metadata=feed
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value), fields


async def test_batch_list_author_posts_returns_reposts_of_live_public_posts_only(
    posts, make_person, infra: Infra
):
    author, sharer, other = await make_person(), await make_person(), await make_person()
    public = [await publish(posts, author, f"p{i}") for i in range(3)]
    members = await publish(posts, author, "m", visibility=post_pb2.VISIBILITY_FOLLOWERS)
    # The author reposts their own FOLLOWERS-only post: never returned (a repost must
    # not widen an audience).
    for post in (public[0], public[2], public[1]):
        await posts.SharePost(post_pb2.SharePostRequest(post_id=post.post_id), metadata=sharer.md)
    await posts.SharePost(post_pb2.SharePostRequest(post_id=members.post_id), metadata=author.md)
    await posts.SharePost(post_pb2.SharePostRequest(post_id=public[0].post_id), metadata=other.md)
    await posts.DeletePost(
        post_pb2.DeletePostRequest(post_id=public[2].post_id), metadata=author.md
    )
    feed = infra.service_auth("feed")

    async def reposts(**fields) -> list[tuple[int, int, int]]:
        reply = await posts.BatchListAuthorPosts(
            post_pb2.BatchListAuthorPostsRequest(**fields), metadata=feed
        )
        assert all(r.share_time.seconds > 0 for r in reply.reposts)
        return [(r.sharer_id, r.post_id, r.author_id) for r in reply.reposts]

    ids = [sharer.id, author.id, other.id]
    assert await reposts(author_ids=ids) == []  # only when asked for
    assert await reposts(author_ids=ids, include_reposts=True) == [
        # newest share first; the deleted post and the FOLLOWERS-only post are absent
        (sharer.id, public[1].post_id, author.id),
        (sharer.id, public[0].post_id, author.id),
        (other.id, public[0].post_id, author.id),
    ]
    assert await reposts(author_ids=ids, include_reposts=True, per_author_limit=1) == [
        (sharer.id, public[1].post_id, author.id),
        (other.id, public[0].post_id, author.id),
    ]
    future = timestamp_pb2.Timestamp(seconds=public[0].create_time.seconds + 3600)
    assert await reposts(author_ids=ids, include_reposts=True, since_time=future) == []


async def test_a_servicer_used_before_it_is_ready_answers_unavailable(infra: Infra):
    """Null guards are `ready()`, not asserts (which `python -O` strips)."""
    from services.kit.errors import Unavailable
    from services.kit.server import Runtime
    from services.post.servicer import PostServicer

    servicer = PostServicer(Runtime(infra.settings("post")))
    with pytest.raises(Unavailable):
        await servicer._resolve_mentions(["somebody"])
    with pytest.raises(Unavailable):
        await servicer._authors([1], None)


async def test_thirty_first_post_in_a_minute_is_rate_limited(posts, make_person):
    author = await make_person()
    for i in range(30):
        await publish(posts, author, f"n{i}")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await publish(posts, author, "one too many")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_events_carry_what_their_consumers_need(posts, make_person, mesh):
    author, fan = await make_person(), await make_person()
    post = await publish(posts, author, f"hey @{fan.handle} #Launch")
    await posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=fan.md)
    await posts.UnlikePost(post_pb2.UnlikePostRequest(post_id=post.post_id), metadata=fan.md)
    await posts.SharePost(post_pb2.SharePostRequest(post_id=post.post_id), metadata=fan.md)
    await posts.UnsharePost(post_pb2.UnsharePostRequest(post_id=post.post_id), metadata=fan.md)
    comment = await posts.CreateComment(
        post_pb2.CreateCommentRequest(
            post_id=post.post_id, comment=post_pb2.Comment(text="x" * 300)
        ),
        metadata=fan.md,
    )
    await posts.DeleteComment(
        post_pb2.DeleteCommentRequest(post_id=post.post_id, comment_id=comment.comment_id),
        metadata=fan.md,
    )
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id), metadata=author.md)
    redis = mesh["post"].host.runtime.redis
    wanted = {
        post_events.PostCreated,
        post_events.PostLiked,
        post_events.PostUnliked,
        post_events.PostShared,
        post_events.PostUnshared,
        post_events.CommentCreated,
        post_events.CommentDeleted,
        post_events.PostDeleted,
    }
    found: dict[type, tuple] = {}
    for _ in range(50):
        found = {
            type(event): (envelope, event)
            for envelope, event in await recent_events(redis, "events:post", 300)
            if envelope.aggregate_id == post.post_id
        }
        if wanted <= set(found):
            break
        await asyncio.sleep(0.1)
    assert set(found) == wanted
    envelope, created = found[post_events.PostCreated]
    assert (created.author_id, list(created.mention_ids)) == (author.id, [fan.id])
    assert created.visibility == post_pb2.VISIBILITY_PUBLIC
    assert list(created.hashtags) == ["launch"]
    assert created.create_time.ToDatetime() == post.create_time.ToDatetime()
    assert envelope.producer == "post" and envelope.occur_time.seconds > 0
    for kind in (post_events.PostLiked, post_events.PostUnliked, post_events.PostShared):
        event = found[kind][1]
        assert (event.user_id, event.post_author_id) == (fan.id, author.id)  # type: ignore[attr-defined]
    _, commented = found[post_events.CommentCreated]
    assert (commented.comment_id, commented.author_id, commented.post_author_id) == (
        comment.comment_id,
        fan.id,
        author.id,
    )
    assert commented.snippet == "x" * 140
    _, uncommented = found[post_events.CommentDeleted]
    assert (uncommented.comment_id, uncommented.post_author_id) == (comment.comment_id, author.id)
    event_ids = [envelope.event_id for envelope, _ in found.values()]
    assert len(set(event_ids)) == len(event_ids)


async def test_no_event_is_lost_if_the_service_dies_between_commit_and_publish(
    infra: Infra, mesh: Mesh, make_person
):
    """The outbox row commits with the post; a restarted instance's relay publishes it."""
    from services.kit.server import ServiceHost
    from services.post.service import build_spec

    author = await make_person()
    shared_relay = mesh["post"].host.runtime.relay
    assert shared_relay is not None
    await shared_relay.stop()  # nothing else may publish while we stage the crash
    try:
        doomed = ServiceHost(build_spec(), infra.settings("post", mesh.env))
        await doomed.start()
        assert doomed.runtime.relay is not None
        await doomed.runtime.relay.stop()  # it "dies" right after committing
        async with grpc.aio.insecure_channel(f"127.0.0.1:{doomed.port}") as channel:
            stub = post_pb2_grpc.PostServiceStub(channel)
            post = await publish(stub, author, "written just before the crash")
        await doomed.stop()
        db = mesh["post"].host.runtime.db
        pending = await db.primary.fetchval(
            "SELECT count(*) FROM post.outbox WHERE aggregate_id = $1 AND published_at IS NULL",
            post.post_id,
        )
        assert pending == 1
        redis = mesh["post"].host.runtime.redis

        async def published() -> bool:
            events = await recent_events(redis, "events:post", 500)
            return any(envelope.aggregate_id == post.post_id for envelope, _ in events)

        assert not await published()
        restarted = ServiceHost(build_spec(), infra.settings("post", mesh.env))
        await restarted.start()
        try:
            for _ in range(50):
                if await published():
                    break
                await asyncio.sleep(0.1)
            assert await published()
        finally:
            await restarted.stop()
    finally:
        shared_relay.start()


async def test_posts_embed_the_author_s_ready_media_and_nobody_else_s(posts, make_person, mesh):
    from socialmesh.media.v1 import media_pb2, media_pb2_grpc

    from .media_support import image_bytes, settled, upload

    media = media_pb2_grpc.MediaServiceStub(mesh["media"].channel)
    author, other = await make_person(), await make_person()
    photo = await upload(media, author, image_bytes("PNG"), description="alt text")
    assert (await settled(media, author, photo.media_id)).state == media_pb2.MEDIA_STATE_READY
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(media_ids=[photo.media_id])),
        metadata=author.md,
    )
    (embedded,) = post.media
    assert embedded.media_id == photo.media_id and embedded.description == "alt text"
    assert embedded.variants and embedded.blurhash
    read = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=other.md)
    assert [m.media_id for m in read.media] == [photo.media_id]
    stolen = posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(media_ids=[photo.media_id])),
        metadata=other.md,
    )
    assert await code_of(stolen) == grpc.StatusCode.PERMISSION_DENIED
    missing = posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(media_ids=[2**62])), metadata=author.md
    )
    assert await code_of(missing) == grpc.StatusCode.NOT_FOUND
