"""The feed service over real gRPC (with the real user, graph and post services), real PG/Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest
from socialmesh.feed.v1 import feed_pb2
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2

from services.feed import ranking
from services.feed.servicer import FeedServicer
from services.feed.timelines import (
    CELEBRITIES,
    FEEDBACK_GIVERS,
    Entry,
    author_key,
    built_key,
    celebs_key,
    share_key,
    tl_key,
)
from services.kit.consumers import EventMeta

from .conftest import Mesh, Person
from .feed_support import followed, read
from .helpers import code_of, eventually, follow, publish, violations

FOLLOWING = feed_pb2.FEED_KIND_FOLLOWING
RANKED = feed_pb2.FEED_KIND_RANKED


@pytest.fixture
def service(mesh: Mesh) -> FeedServicer:
    servicer = mesh["feed"].host.servicer
    assert isinstance(servicer, FeedServicer)
    return servicer


@pytest.fixture
def threshold(service: FeedServicer) -> Iterator[Callable[[int], None]]:
    """Lowers the fan-out threshold for one test (10,000 followers do not fit in a test)."""
    before = service.config

    def set_to(value: int) -> None:
        service.config = dataclasses.replace(before, fanout_threshold=value)

    yield set_to
    service.config = before


async def ids(feed, who: Person, kind=FOLLOWING, page_size: int = 100) -> list[int]:
    reply = await read(feed, who, kind, page_size=page_size)
    return [i.post_id for i in reply.items]


async def members(mesh: Mesh, key: str) -> list[Entry]:
    raw = await mesh["feed"].host.runtime.redis.zrange(key, 0, -1)
    return [Entry.parse(m) for m in raw]


async def post_ids_in(mesh: Mesh, key: str) -> set[int]:
    return {e.post_id for e in await members(mesh, key)}


def meta(event_id: int) -> EventMeta:
    return EventMeta(event_id, "test", 0, datetime.now(UTC), "test")


async def test_anonymous_home_feed_is_unauthenticated(feed):
    assert await code_of(feed.GetHomeFeed(feed_pb2.GetHomeFeedRequest())) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_following_feed_side_loads_posts_and_authors(feed, posts, graph, make_person, mesh):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    first = await read(feed, fan)
    assert first.partial and not first.items  # a cold timeline is rebuilt and flagged
    assert first.retry_after.ToMilliseconds() > 0  # ...with when to ask again
    post = await publish(posts, idol, "hi #feed")

    async def arrived() -> bool:
        return post.post_id in await ids(feed, fan)

    await eventually(arrived)
    reply = await read(feed, fan)
    assert not reply.partial and reply.kind == FOLLOWING
    assert not reply.HasField("retry_after")
    assert [i.post_id for i in reply.items] == [post.post_id]
    assert reply.items[0].reason == feed_pb2.FEED_REASON_FOLLOWING
    assert [p.post_id for p in reply.posts] == [post.post_id] and reply.posts[0].text == "hi #feed"
    assert [a.user_id for a in reply.authors] == [idol.id] and reply.authors[0].handle
    assert reply.items[0].tracking_token and "score" not in reply.items[0].tracking_token


async def test_fanout_reaches_active_followers_only(feed, posts, graph, make_person, mesh):
    idol, active, dormant = await make_person(), await make_person(), await make_person()
    await follow(graph, active, idol)
    await follow(graph, dormant, idol)
    await read(feed, active)  # reading records activity; dormant never reads
    post = await publish(posts, idol)

    async def pushed() -> bool:
        return post.post_id in await post_ids_in(mesh, tl_key(active.id))

    await eventually(pushed)
    redis = mesh["feed"].host.runtime.redis
    assert not await redis.exists(tl_key(dormant.id))
    # ...and the dormant follower still gets it: the first read rebuilds (partial).
    back = await read(feed, dormant)
    assert back.partial and [i.post_id for i in back.items] == [post.post_id]


async def test_celebrity_posts_are_merged_at_read_with_o1_writes(
    feed, posts, graph, make_person, mesh, threshold
):
    celebrity, fans = await make_person(), [await make_person() for _ in range(3)]
    for fan in fans:
        await follow(graph, fan, celebrity)
        await read(feed, fan)  # active
    threshold(3)
    post = await publish(posts, celebrity, "to the masses")

    async def in_author_set() -> bool:
        return post.post_id in await post_ids_in(mesh, author_key(celebrity.id))

    await eventually(in_author_set)
    redis = mesh["feed"].host.runtime.redis
    assert await redis.sismember(CELEBRITIES, str(celebrity.id))
    for fan in fans:  # no write to any follower's timeline...
        assert post.post_id not in await post_ids_in(mesh, tl_key(fan.id))
        assert await ids(feed, fan) == [post.post_id]  # ...yet every follower sees it
    late = await make_person()
    await follow(graph, late, celebrity)
    await eventually(lambda: _sees(feed, late, post.post_id))
    stranger = await make_person()
    assert post.post_id not in await ids(feed, stranger)


async def _sees(feed, who: Person, post_id: int) -> bool:
    return post_id in await ids(feed, who)


async def test_follow_backfills_and_unfollow_mute_block_delete_remove(
    feed, posts, graph, make_person, mesh
):
    idol, fan = await make_person(), await make_person()
    await read(feed, fan)  # built (empty) and active
    old = await publish(posts, idol, "before the follow")
    await follow(graph, fan, idol)
    await eventually(lambda: _sees(feed, fan, old.post_id))  # back-filled

    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=idol.id), metadata=fan.md)

    async def gone() -> bool:
        return old.post_id not in await post_ids_in(mesh, tl_key(fan.id))

    await eventually(gone)
    assert old.post_id not in await ids(feed, fan)

    await follow(graph, fan, idol)
    await eventually(lambda: _sees(feed, fan, old.post_id))
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=idol.id), metadata=fan.md)
    await eventually(gone)
    newer = await publish(posts, idol, "while muted")
    await asyncio.sleep(1.0)
    assert newer.post_id not in await ids(feed, fan)  # muted authors are filtered at read
    await graph.UnmuteUser(graph_pb2.UnmuteUserRequest(user_id=idol.id), metadata=fan.md)
    await eventually(lambda: _sees(feed, fan, newer.post_id))

    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=newer.post_id), metadata=idol.md)

    async def deleted() -> bool:
        return newer.post_id not in await post_ids_in(mesh, tl_key(fan.id))

    await eventually(deleted)
    assert newer.post_id not in await ids(feed, fan)

    third = await publish(posts, idol, "before the block")
    await eventually(lambda: _sees(feed, fan, third.post_id))
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=fan.id), metadata=idol.md)

    async def blocked() -> bool:
        return third.post_id not in await post_ids_in(mesh, tl_key(fan.id))

    await eventually(blocked)
    assert await ids(feed, fan) == []


async def test_events_consumed_twice_or_out_of_order_change_nothing(
    service: FeedServicer, posts, graph, make_person, mesh
):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await service.timelines.mark_built(fan.id)
    await service.timelines.open_read(fan.id)  # a read marks the fan active
    post = await publish(posts, idol)
    created = post_events.PostCreated(
        post_id=post.post_id, author_id=idol.id, visibility=post_pb2.VISIBILITY_PUBLIC
    )
    for _ in range(3):  # redelivery
        await service._on_post_created(created, meta(10**15))
    assert [e.post_id for e in await members(mesh, tl_key(fan.id))] == [post.post_id]

    # An Unfollowed that overtakes the (older) Followed wins whatever the order.
    other = await make_person()
    unfollowed = graph_events.Unfollowed(follower_id=other.id, followee_id=idol.id)
    followed = graph_events.Followed(follower_id=other.id, followee_id=idol.id)
    await service.timelines.mark_built(other.id)
    await service._on_unfollowed(unfollowed, meta(2 * 10**15))
    await service._on_followed(followed, meta(10**15))
    assert await members(mesh, tl_key(other.id)) == []
    await service._on_followed(followed, meta(3 * 10**15))  # a newer follow applies
    assert {e.post_id for e in await members(mesh, tl_key(other.id))} == {post.post_id}


async def test_a_crash_mid_fanout_loses_nothing(
    service: FeedServicer, feed, posts, graph, make_person, mesh, monkeypatch
):
    idol, fans = await make_person(), [await make_person() for _ in range(3)]
    for fan in fans:
        await follow(graph, fan, idol)
        await read(feed, fan)
    real = service.timelines.push
    crashes = []

    async def crash_once(user_ids, entries):
        pushed = await real(list(user_ids)[:1], entries)  # part of the work is done...
        if not crashes:
            crashes.append(1)
            raise ConnectionError("redis went away mid fan-out")  # ...then it dies
        return pushed + await real(user_ids, entries)

    monkeypatch.setattr(service.timelines, "push", crash_once)
    post = await publish(posts, idol)

    async def everyone() -> bool:
        return all([post.post_id in await post_ids_in(mesh, tl_key(f.id)) for f in fans])

    await eventually(everyone)  # the consumer retried the event
    assert crashes


async def test_following_pages_neither_repeat_nor_skip_under_concurrent_posting(
    feed, posts, graph, make_person, mesh
):
    authors, reader = [await make_person() for _ in range(3)], await make_person()
    for author in authors:
        await follow(graph, reader, author)
    await read(feed, reader)
    before = [await publish(posts, authors[i % 3], f"old {i}") for i in range(24)]
    wanted = {p.post_id for p in before}

    async def all_there() -> bool:
        return wanted <= await post_ids_in(mesh, tl_key(reader.id))

    await eventually(all_there)

    during: list[int] = []

    async def keep_posting() -> None:
        for i in range(12):
            during.append((await publish(posts, authors[i % 3], f"new {i}")).post_id)
            await asyncio.sleep(0.05)

    writer = asyncio.create_task(keep_posting())
    first = await read(feed, reader, page_size=5)
    seen = [i.post_id for i in first.items]
    token = first.next_page_token
    while token:
        page = await read(feed, reader, page_size=5, page_token=token)
        seen += [i.post_id for i in page.items]
        token = page.next_page_token
        await asyncio.sleep(0.05)
    await writer
    assert len(seen) == len(set(seen)), "a page repeated an item"
    assert seen == sorted(seen, reverse=True), "pages out of order"
    assert set(seen) == wanted, "a page skipped an item (or showed one from above the top)"

    # Refresh from the top: exactly the posts that arrived, no repeats.
    async def fanned_out() -> bool:
        return set(during) <= await post_ids_in(mesh, tl_key(reader.id))

    await eventually(fanned_out)
    latest = await read(feed, reader, page_size=5, page_token=first.newer_page_token)
    newer = [i.post_id for i in latest.items]
    token = latest.newer_page_token
    while latest.items:
        latest = await read(feed, reader, page_size=5, page_token=token)
        newer += [i.post_id for i in latest.items]
        token = latest.newer_page_token
    assert sorted(newer) == sorted(during) and len(newer) == len(set(newer))


async def test_new_item_count_counts_arrivals_above_the_session(
    feed, posts, graph, make_person, mesh
):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    for i in range(3):
        await publish(posts, idol, f"p{i}")
    await eventually(lambda: _count(mesh, fan, 3))
    top = await read(feed, fan, page_size=2)
    assert top.new_item_count == 0
    fresh = [await publish(posts, idol, f"fresh{i}") for i in range(2)]
    await eventually(lambda: _count(mesh, fan, 5))
    older = await read(feed, fan, page_size=2, page_token=top.next_page_token)
    assert older.new_item_count == 2
    refresh = await read(feed, fan, page_token=top.newer_page_token)
    assert [i.post_id for i in refresh.items] == [p.post_id for p in reversed(fresh)]
    assert refresh.new_item_count == 0 and refresh.next_page_token == ""


async def _count(mesh: Mesh, who: Person, n: int) -> bool:
    return len(await members(mesh, tl_key(who.id))) >= n


async def test_strangers_never_see_followers_or_private_posts_in_any_feed(
    feed, posts, graph, make_person, mesh, service
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    shy = await make_person(private=True)
    await follow(graph, fan, author)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=shy.id), metadata=fan.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=shy.md
    )
    await follow(graph, stranger, fan)  # the stranger follows the fan, who reposts
    for who in (fan, stranger):
        await read(feed, who)
    hidden = await publish(posts, author, "friends only", visibility=post_pb2.VISIBILITY_FOLLOWERS)
    private = await publish(posts, shy, "private account")
    public = await publish(posts, author, "for everyone")
    await eventually(lambda: _sees(feed, fan, hidden.post_id))
    await eventually(lambda: _sees(feed, fan, private.post_id))
    await eventually(lambda: _sees(feed, fan, public.post_id))
    await posts.SharePost(post_pb2.SharePostRequest(post_id=public.post_id), metadata=fan.md)
    await eventually(lambda: _sees(feed, stranger, public.post_id))
    # Even a stale or forged timeline entry is re-checked at read under the viewer's token.
    await service.timelines.push(
        [stranger.id],
        [Entry.post(hidden.post_id, author.id), Entry.post(private.post_id, shy.id)],
    )
    for kind in (FOLLOWING, RANKED):
        seen = await ids(feed, stranger, kind)
        assert public.post_id in seen
        assert hidden.post_id not in seen and private.post_id not in seen
    # ...and in trends (anonymous and signed-in).
    for p in (hidden, private):
        await posts.LikePost(post_pb2.LikePostRequest(post_id=p.post_id), metadata=fan.md)
    await asyncio.sleep(1.0)
    for md in ((), stranger.md):
        trending = await feed.ListTrendingPosts(
            feed_pb2.ListTrendingPostsRequest(page_size=100), metadata=md
        )
        shown = {p.post_id for p in trending.posts}
        assert hidden.post_id not in shown and private.post_id not in shown


async def test_ranked_falls_back_to_following_when_ranking_raises(
    feed, posts, graph, make_person, mesh, monkeypatch
):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)
    await eventually(lambda: _sees(feed, fan, post.post_id))
    ranked = await read(feed, fan, RANKED)
    assert ranked.kind == RANKED and followed(ranked) == [post.post_id]

    def broken(*args, **kwargs):
        raise RuntimeError("ranker exploded")

    monkeypatch.setattr(ranking, "rank", broken)
    fallback = await read(feed, fan, RANKED)
    assert fallback.kind == FOLLOWING and [i.post_id for i in fallback.items] == [post.post_id]


async def test_ranked_scores_affinity_and_feedback_counts_on_the_next_page(
    feed, posts, graph, make_person, mesh
):
    liked, plain, fan = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, liked)
    await follow(graph, fan, plain)
    await read(feed, fan)
    made = []
    for i in range(3):
        made.append(await publish(posts, liked, f"liked {i}"))
        made.append(await publish(posts, plain, f"plain {i}"))
    favourite = await publish(posts, liked, "the fan likes this one")
    await posts.LikePost(post_pb2.LikePostRequest(post_id=favourite.post_id), metadata=fan.md)
    await eventually(lambda: _count(mesh, fan, 7))
    await asyncio.sleep(0.5)  # the like's affinity event
    first = await read(feed, fan, RANKED, page_size=2)
    assert first.kind == RANKED
    assert first.items[0].post_id == favourite.post_id  # engagement x affinity
    # SHOW_LESS_FROM_AUTHOR: the author is gone from the next page of this session.
    reply = await feed.SubmitFeedback(
        feed_pb2.SubmitFeedbackRequest(
            post_id=favourite.post_id,
            kind=feed_pb2.FEEDBACK_KIND_SHOW_LESS_FROM_AUTHOR,
            tracking_token=first.items[0].tracking_token,
        ),
        metadata=fan.md,
    )
    assert reply.recorded
    again = await feed.SubmitFeedback(
        feed_pb2.SubmitFeedbackRequest(
            post_id=favourite.post_id, kind=feed_pb2.FEEDBACK_KIND_SHOW_LESS_FROM_AUTHOR
        ),
        metadata=fan.md,
    )
    assert not again.recorded  # durable and idempotent
    rest = await read(feed, fan, RANKED, page_size=20, page_token=first.next_page_token)
    authors = {p.author_id for p in rest.posts if p.post_id in followed(rest)}
    assert authors == {plain.id}
    # NOT_INTERESTED hides a post from both tabs from the next page on.
    victim = made[1]
    await feed.SubmitFeedback(
        feed_pb2.SubmitFeedbackRequest(
            post_id=victim.post_id, kind=feed_pb2.FEEDBACK_KIND_NOT_INTERESTED
        ),
        metadata=fan.md,
    )
    assert victim.post_id not in await ids(feed, fan, FOLLOWING)
    assert victim.post_id not in await ids(feed, fan, RANKED)


async def test_feedback_survives_a_redis_that_lost_the_feed(
    feed, service: FeedServicer, posts, graph, make_person, mesh
):
    """Reads query feedback only for flagged viewers; a Redis that lost the flag
    (and with it the timeline) learns it again at the rebuild."""
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    victim = await publish(posts, idol, "not interested")
    kept = await publish(posts, idol, "fine")
    await eventually(lambda: _sees(feed, fan, kept.post_id))
    await feed.SubmitFeedback(
        feed_pb2.SubmitFeedbackRequest(
            post_id=victim.post_id, kind=feed_pb2.FEEDBACK_KIND_NOT_INTERESTED
        ),
        metadata=fan.md,
    )
    assert await ids(feed, fan, FOLLOWING) == [kept.post_id]
    redis = service.timelines.redis
    await redis.delete(FEEDBACK_GIVERS, tl_key(fan.id), built_key(fan.id))
    rebuilt = await read(feed, fan)
    assert rebuilt.partial
    assert await ids(feed, fan, FOLLOWING) == [kept.post_id]
    assert await redis.sismember(FEEDBACK_GIVERS, str(fan.id))


async def test_impressions_are_durable_idempotent_and_token_checked(
    feed, posts, graph, make_person, mesh
):
    idol, fan, other = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)
    await eventually(lambda: _sees(feed, fan, post.post_id))
    (item,) = [i for i in (await read(feed, fan, RANKED)).items if i.post_id == post.post_id]
    impression = feed_pb2.Impression(
        impression_id="imp-1",
        tracking_token=item.tracking_token,
        post_id=post.post_id,
        surface=feed_pb2.SURFACE_HOME_RANKED,
        position=0,
    )
    request = feed_pb2.RecordImpressionsRequest(impressions=[impression, impression])
    assert (await feed.RecordImpressions(request, metadata=fan.md)).recorded_count == 1
    assert (await feed.RecordImpressions(request, metadata=fan.md)).recorded_count == 0
    db = mesh["feed"].host.runtime.db
    row = await db.primary.fetchrow(
        "SELECT served_kind, served_rank, arm FROM feed.impressions WHERE viewer_id = $1", fan.id
    )
    assert row["served_kind"] == RANKED and row["served_rank"] == 0 and row["arm"]
    # Another user's token, or a tampered one, is refused naming the field.
    for who, token in ((other, item.tracking_token), (fan, item.tracking_token[:-2] + "AA")):
        bad = feed_pb2.Impression(impression_id="x", tracking_token=token, post_id=post.post_id)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await feed.RecordImpressions(
                feed_pb2.RecordImpressionsRequest(impressions=[bad]), metadata=who.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "impressions[0].trackingToken" in violations(err.value)


async def test_cold_rebuild_sets_partial_and_restores_the_timeline(
    feed, posts, graph, make_person, mesh
):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)
    await eventually(lambda: _sees(feed, fan, post.post_id))
    redis = mesh["feed"].host.runtime.redis
    await redis.delete(tl_key(fan.id), built_key(fan.id))  # expired after weeks away
    back = await read(feed, fan)
    assert back.partial and [i.post_id for i in back.items] == [post.post_id]
    assert not (await read(feed, fan)).partial


@pytest.mark.parametrize("share_key_expired", [False, True])
async def test_cold_rebuild_restores_reposts_and_a_later_unshare_removes_them(
    feed, posts, graph, make_person, mesh, share_key_expired
):
    writer, sharer, fan = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, sharer)  # the fan follows only the reposter
    await read(feed, fan)
    post = await publish(posts, writer, "worth a repost")
    await posts.SharePost(post_pb2.SharePostRequest(post_id=post.post_id), metadata=sharer.md)

    async def reposted() -> list[tuple[int, int]]:
        reply = await read(feed, fan)
        return [(i.post_id, i.shared_by_user_id) for i in reply.items]

    await eventually(lambda: _is(reposted(), [(post.post_id, sharer.id)]))
    redis = mesh["feed"].host.runtime.redis
    await redis.delete(tl_key(fan.id), built_key(fan.id))  # expired after weeks away
    if share_key_expired:  # the rebuild must remember the repost's key for the unshare
        await redis.delete(share_key(post.post_id, sharer.id))
    back = await read(feed, fan)
    assert back.partial
    assert [(i.post_id, i.shared_by_user_id) for i in back.items] == [(post.post_id, sharer.id)]

    await posts.UnsharePost(post_pb2.UnsharePostRequest(post_id=post.post_id), metadata=sharer.md)
    await eventually(lambda: _is(reposted(), []))


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_trending_tags_are_counted_decayed_and_paginated(feed, posts, make_person, mesh):
    author = await make_person()
    tag = f"t{author.id}"
    for i in range(3):
        await publish(posts, author, f"#{tag} and #{tag}b {i}")
    await publish(posts, author, f"#{tag}c", visibility=post_pb2.VISIBILITY_FOLLOWERS)

    async def counted() -> bool:
        reply = await feed.ListTrendingTags(feed_pb2.ListTrendingTagsRequest(page_size=50))
        return tag in {t.hashtag for t in reply.tags}

    await eventually(counted)
    seen: list[str] = []
    token = ""
    while True:
        page = await feed.ListTrendingTags(
            feed_pb2.ListTrendingTagsRequest(
                window=feed_pb2.TREND_WINDOW_HOUR, page_size=1, page_token=token
            )
        )
        seen += [t.hashtag for t in page.tags]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) and {tag, f"{tag}b"} <= set(seen)
    assert f"{tag}c" not in seen  # followers-only posts never trend
    bad = await code_of(
        feed.ListTrendingTags(feed_pb2.ListTrendingTagsRequest(page_token="forged.token"))
    )
    assert bad == grpc.StatusCode.INVALID_ARGUMENT


async def test_suggested_users_are_friends_of_friends_ranked_by_mutuals(feed, graph, make_person):
    me, b, e, c, d, blocker, muted = [await make_person() for _ in range(7)]
    for fan, idol in ((me, b), (me, e), (b, c), (b, d), (e, d), (b, blocker), (b, muted), (e, me)):
        await follow(graph, fan, idol)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=me.id), metadata=blocker.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=me.md)
    reply = await feed.ListSuggestedUsers(
        feed_pb2.ListSuggestedUsersRequest(page_size=10), metadata=me.md
    )
    ranked = [(s.user.user_id, s.mutual_count) for s in reply.users]
    assert ranked[:2] == [(d.id, 2), (c.id, 1)]  # d is followed by two of my follows
    suggested = {u for u, _ in ranked}
    # Never me, accounts I follow, accounts that block me or that I mute.
    assert not suggested & {me.id, b.id, e.id, blocker.id, muted.id}
    assert all(m == 0 for _, m in ranked[2:])  # the rest: popular accounts
    assert reply.users[0].user.handle == d.handle  # side-loaded profile
    two = await feed.ListSuggestedUsers(
        feed_pb2.ListSuggestedUsersRequest(page_size=2), metadata=me.md
    )
    assert [s.user.user_id for s in two.users] == [d.id, c.id]


async def test_timeline_scripts_survive_a_flushed_script_cache(service: FeedServicer, mesh):
    """After a Redis restart or failover the scripts are gone (NOSCRIPT): reloaded once."""
    redis = mesh["feed"].host.runtime.redis
    entry = Entry.post(10**12 + 7, 42)
    await service.timelines.push([991_000_001], [entry])  # loads the scripts
    await service.timelines.merge_author([991_000_001], 42)
    await redis.script_flush()
    await service.timelines.push(iter([991_000_002]), [entry])  # an iterator, consumed once
    await service.timelines.merge_author([991_000_002], 43)
    assert [e.post_id for e in await members(mesh, tl_key(991_000_002))] == [entry.post_id]
    assert await redis.smembers(celebs_key(991_000_002)) == {b"43"}
    await service.timelines.mark_built(991_000_002)
    await service.timelines.open_read(991_000_002, ("", 5))  # loads the read script
    await redis.script_flush()
    state = await service.timelines.open_read(991_000_002, ("", 5))
    assert state.built and [e.post_id for e in state.batch or []] == [entry.post_id]


async def test_a_read_prelude_returns_what_older_would(service: FeedServicer, mesh):
    """`open_read(first=...)` walks the timeline, the reader's own set and the followed
    celebrities' sets in the script, exactly as `older` walks `sources`."""
    tl = service.timelines
    viewer, celebrity = 991_000_101, 991_000_102
    mine = [Entry.post(10**12 + i, viewer) for i in (3, 9)]
    pushed = [Entry.post(10**12 + i, 7) for i in (1, 4, 6, 8)]
    starred = [Entry.post(10**12 + i, celebrity) for i in (2, 5, 10)]
    await tl.push([viewer], [*pushed, mine[0]])  # the own post fanned out too: a duplicate
    for entry in mine:
        await tl.push_author(viewer, entry)
    for entry in starred:
        await tl.push_author(celebrity, entry)
    await tl.merge_author([viewer], celebrity)
    state = await tl.open_read(viewer)
    assert not state.built and state.batch is None  # nothing is read before a rebuild
    await tl.mark_built(viewer)
    sources = (await tl.open_read(viewer)).sources
    assert author_key(celebrity) in sources
    everything = await tl.older(sources, None, 100)
    assert len(everything) == len(pushed) + len(mine) + len(starred)
    for before in [None, *(e.member for e in everything)]:
        for count in (1, 3, 20):
            state = await tl.open_read(viewer, (before, count))
            assert state.batch == await tl.older(sources, before, count), (before, count)
    assert (await tl.open_read(viewer)).batch is None  # only when asked for
