"""The graph service over real gRPC (with the real user service), real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2
from socialmesh.user.v1 import user_pb2

from services.kit.events import recent_events

from .conftest import Infra, Mesh, Person
from .helpers import violations


async def counts(graph, *people: Person) -> list[tuple[int, int]]:
    """Follow counts of some accounts (an internal method: asked here as the first of them)."""
    reply = await graph.BatchGetFollowCounts(
        graph_pb2.BatchGetFollowCountsRequest(user_ids=[p.id for p in people]),
        metadata=people[0].md,
    )
    return [(c.follower_count, c.following_count) for c in reply.counts]


async def relationship(graph, viewer: Person, other: Person) -> graph_pb2.Relationship:
    return await graph.GetRelationship(
        graph_pb2.GetRelationshipRequest(user_id=other.id), metadata=viewer.md
    )


async def test_follow_is_idempotent_and_counted_once(graph, make_person):
    a, b = await make_person(), await make_person()
    for _ in range(3):
        reply = await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
        assert reply.state == graph_pb2.FOLLOW_STATE_FOLLOWING
    assert await counts(graph, a, b) == [(0, 1), (1, 0)]
    rel = await relationship(graph, a, b)
    assert rel.following and not rel.followed_by
    assert (await relationship(graph, b, a)).followed_by
    for _ in range(2):
        await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=b.id), metadata=a.md)
    assert await counts(graph, a, b) == [(0, 0), (0, 0)]


async def test_concurrent_identical_follows_count_once(graph, make_person):
    a, b = await make_person(), await make_person()
    await asyncio.gather(
        *(
            graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
            for _ in range(20)
        )
    )
    assert await counts(graph, b) == [(1, 0)]


async def test_self_follow_unknown_target_and_anonymous_are_refused(graph, make_person):
    a = await make_person()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=a.id), metadata=a.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "userId" in violations(
        err.value
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=424242), metadata=a.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=a.id))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_private_account_request_flow(graph, make_person):
    owner, fan, stranger = await make_person(private=True), await make_person(), await make_person()
    reply = await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=owner.id), metadata=fan.md)
    assert reply.state == graph_pb2.FOLLOW_STATE_REQUESTED
    assert (await relationship(graph, fan, owner)).requested
    assert await counts(graph, owner) == [(0, 0)]  # a request is not a follow

    pending = await graph.ListFollowRequests(
        graph_pb2.ListFollowRequestsRequest(), metadata=owner.md
    )
    assert [r.requester_id for r in pending.follow_requests] == [fan.id]

    # Nobody but the requested account may answer.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.AcceptFollowRequest(
            graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id, target_id=owner.id),
            metadata=stranger.md,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the stranger has no such request
        await graph.AcceptFollowRequest(
            graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=stranger.md
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # A stranger cannot page a private account's lists; the owner can.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowers(graph_pb2.ListFollowersRequest(user_id=owner.id), metadata=fan.md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=owner.md
    )
    rel = await relationship(graph, fan, owner)
    assert rel.following and not rel.requested
    assert await counts(graph, owner, fan) == [(1, 0), (0, 1)]
    listed = await graph.ListFollowers(
        graph_pb2.ListFollowersRequest(user_id=owner.id), metadata=fan.md
    )
    assert [f.user_id for f in listed.followers] == [fan.id] and listed.total_size == 1
    empty = await graph.ListFollowRequests(graph_pb2.ListFollowRequestsRequest(), metadata=owner.md)
    assert list(empty.follow_requests) == []


async def test_reject_and_cancel_requests(graph, make_person):
    owner, fan, other = await make_person(private=True), await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=owner.id), metadata=fan.md)
    await graph.RejectFollowRequest(
        graph_pb2.RejectFollowRequestRequest(requester_id=fan.id), metadata=owner.md
    )
    assert not (await relationship(graph, fan, owner)).requested
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=owner.id), metadata=other.md)
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=owner.id), metadata=other.md)
    pending = await graph.ListFollowRequests(
        graph_pb2.ListFollowRequestsRequest(), metadata=owner.md
    )
    assert list(pending.follow_requests) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.AcceptFollowRequest(
            graph_pb2.AcceptFollowRequestRequest(requester_id=other.id), metadata=owner.md
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_block_side_effects(graph, users, make_person):
    a, b = await make_person(), await make_person(private=True)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=a.id), metadata=b.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)  # request
    assert await counts(graph, a, b) == [(1, 0), (0, 1)]

    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=b.id), metadata=a.md)
    assert await counts(graph, a, b) == [(0, 0), (0, 0)]
    rel = await relationship(graph, a, b)
    assert rel.blocking and not rel.following and not rel.followed_by and not rel.requested
    pending = await graph.ListFollowRequests(graph_pb2.ListFollowRequestsRequest(), metadata=b.md)
    assert list(pending.follow_requests) == []

    # The blocked account cannot follow, and sees the blocker as gone.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=a.id), metadata=b.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetUser(user_pb2.GetUserRequest(user_id=a.id), metadata=b.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    batch = await users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[a.id]), metadata=b.md)
    assert list(batch.users) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowers(graph_pb2.ListFollowersRequest(user_id=a.id), metadata=b.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The blocker must unblock before following.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    await graph.UnblockUser(graph_pb2.UnblockUserRequest(user_id=b.id), metadata=a.md)
    assert (
        await users.GetUser(user_pb2.GetUserRequest(user_id=a.id), metadata=b.md)
    ).user_id == a.id
    assert not (await relationship(graph, a, b)).following  # follows are not restored


async def test_mute_keeps_the_follow(graph, make_person):
    a, b = await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=b.id), metadata=a.md)
    rel = await relationship(graph, a, b)
    assert rel.muting and rel.following
    await graph.UnmuteUser(graph_pb2.UnmuteUserRequest(user_id=b.id), metadata=a.md)
    assert not (await relationship(graph, a, b)).muting


async def test_pagination_is_stable_while_follows_are_added(graph, make_person):
    star = await make_person()
    fans = [await make_person() for _ in range(23)]
    for fan in fans:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=star.id), metadata=fan.md)
    seen: list[int] = []
    token = ""
    late = []
    while True:
        page = await graph.ListFollowers(
            graph_pb2.ListFollowersRequest(user_id=star.id, page_size=5, page_token=token),
            metadata=star.md,
        )
        seen.extend(f.user_id for f in page.followers)
        # Someone follows between every page: they must not shift the pages.
        newcomer = await make_person()
        late.append(newcomer.id)
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=star.id), metadata=newcomer.md)
        token = page.next_page_token
        if not token:
            break
    assert seen == [f.id for f in reversed(fans)]  # newest first, no duplicates, no skips
    assert not set(seen) & set(late)
    first = await graph.ListFollowers(
        graph_pb2.ListFollowersRequest(user_id=star.id, page_size=1000), metadata=star.md
    )
    assert first.total_size == len(fans) + len(late) == len(first.followers)


async def test_page_tokens_are_tamper_checked_and_bound_to_their_list(graph, make_person):
    a, b = await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
    c = await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=c.md)
    page = await graph.ListFollowers(
        graph_pb2.ListFollowersRequest(user_id=b.id, page_size=1), metadata=b.md
    )
    assert page.next_page_token
    body, sig = page.next_page_token.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig
    for token, user_id in ((tampered, b.id), (page.next_page_token, a.id), ("garbage", b.id)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await graph.ListFollowers(
                graph_pb2.ListFollowersRequest(user_id=user_id, page_token=token), metadata=b.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pageToken" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowers(
            graph_pb2.ListFollowersRequest(user_id=b.id, page_size=-1), metadata=b.md
        )
    assert "pageSize" in violations(err.value)


async def test_counts_equal_a_recount_after_random_operations(graph, make_person, mesh: Mesh):
    people = [await make_person(private=(i == 0)) for i in range(8)]
    rng = random.Random(7)

    async def random_op() -> None:
        actor, target = rng.sample(people, 2)
        op = rng.choice(["follow"] * 5 + ["unfollow"] * 3 + ["block", "unblock"])
        request_type = {
            "follow": (graph.FollowUser, graph_pb2.FollowUserRequest),
            "unfollow": (graph.UnfollowUser, graph_pb2.UnfollowUserRequest),
            "block": (graph.BlockUser, graph_pb2.BlockUserRequest),
            "unblock": (graph.UnblockUser, graph_pb2.UnblockUserRequest),
        }[op]
        try:
            await request_type[0](request_type[1](user_id=target.id), metadata=actor.md)
        except grpc.aio.AioRpcError as exc:  # follows across blocks are refused; that is fine
            assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)

    for _ in range(15):
        await asyncio.gather(*(random_op() for _ in range(12)))
    store = mesh["graph"].host.runtime.db
    truth = await store.primary.fetch(
        """SELECT u.id,
                  (SELECT count(*) FROM graph.follows WHERE followee_id = u.id) AS followers,
                  (SELECT count(*) FROM graph.follows WHERE follower_id = u.id) AS following
           FROM unnest($1::bigint[]) AS u(id)""",
        [p.id for p in people],
    )
    expected = [(r["followers"], r["following"]) for r in truth]
    assert await counts(graph, *people) == expected
    assert sum(f for f, _ in expected) > 0  # the sequence really exercised follows


async def test_profiles_show_graph_counts_and_is_following(graph, users, make_person):
    a, b, c = await make_person(), await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=a.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=b.id), metadata=c.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=c.id), metadata=b.md)
    seen_by_a = await users.GetUser(user_pb2.GetUserRequest(user_id=b.id), metadata=a.md)
    assert (seen_by_a.follower_count, seen_by_a.following_count) == (2, 1)
    assert seen_by_a.is_following
    anonymous = await users.GetUser(user_pb2.GetUserRequest(user_id=b.id))
    assert (anonymous.follower_count, anonymous.is_following) == (2, False)
    batch = await users.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(user_ids=[b.id, c.id]), metadata=a.md
    )
    assert [(u.user_id, u.is_following) for u in batch.users] == [(b.id, True), (c.id, False)]


async def test_private_profile_is_full_for_approved_followers(graph, users, make_person):
    owner, fan = await make_person(private=True), await make_person()
    before = await users.GetUser(user_pb2.GetUserRequest(user_id=owner.id), metadata=fan.md)
    assert before.is_limited_view
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=owner.id), metadata=fan.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=owner.md
    )
    after = await users.GetUser(user_pb2.GetUserRequest(user_id=owner.id), metadata=fan.md)
    assert not after.is_limited_view and after.is_following and after.follower_count == 1


async def test_batch_relationships_for_the_calling_user_or_any_viewer_for_services(
    graph, make_person, infra: Infra
):
    a, b = await make_person(), await make_person()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.BatchGetRelationships(
            graph_pb2.BatchGetRelationshipsRequest(viewer_id=b.id, user_ids=[a.id]), metadata=a.md
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = await graph.BatchGetRelationships(
        graph_pb2.BatchGetRelationshipsRequest(viewer_id=a.id, user_ids=[b.id]), metadata=a.md
    )
    assert [r.user_id for r in reply.relationships] == [b.id]
    # A notification worker asks on behalf of any recipient.
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=a.id), metadata=b.md)
    reply = await graph.BatchGetRelationships(
        graph_pb2.BatchGetRelationshipsRequest(viewer_id=a.id, user_ids=[b.id]),
        metadata=infra.service_auth("chat"),
    )
    assert [(r.user_id, r.blocked_by) for r in reply.relationships] == [(b.id, True)]
    for request, field in (
        (graph_pb2.BatchGetRelationshipsRequest(viewer_id=0, user_ids=[b.id]), "viewerId"),
        (graph_pb2.BatchGetRelationshipsRequest(viewer_id=a.id), "userIds"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await graph.BatchGetRelationships(request, metadata=infra.service_auth("chat"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # internal: never anonymous
        await graph.BatchGetRelationships(
            graph_pb2.BatchGetRelationshipsRequest(viewer_id=a.id, user_ids=[b.id])
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_follower_ids_page_every_follower_for_services_only(graph, make_person, infra: Infra):
    star = await make_person(private=True)  # privacy does not hide followers from fan-out
    fans = [await make_person() for _ in range(7)]
    for fan in fans:
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=star.id), metadata=fan.md)
        await graph.AcceptFollowRequest(
            graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=star.md
        )
    feed = infra.service_auth("feed")
    seen: list[int] = []
    token, pages = "", 0
    while True:
        page = await graph.ListFollowerIds(
            graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_size=3, page_token=token),
            metadata=feed,
        )
        seen += page.follower_ids
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [f.id for f in reversed(fans)] and pages == 3  # newest follow first
    everyone = await graph.ListFollowerIds(
        graph_pb2.ListFollowerIdsRequest(user_id=star.id), metadata=feed
    )
    assert list(everyone.follower_ids) == seen and not everyone.next_page_token
    clamped = await graph.ListFollowerIds(
        graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_size=50_000), metadata=feed
    )
    assert list(clamped.follower_ids) == seen

    # Users (even the account itself) and anonymous callers are refused.
    request = graph_pb2.ListFollowerIdsRequest(user_id=star.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowerIds(request, metadata=star.md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowerIds(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Every field is validated; tokens are bound to their list.
    first = await graph.ListFollowerIds(
        graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_size=1), metadata=feed
    )
    followers_token = (
        await graph.ListFollowers(
            graph_pb2.ListFollowersRequest(user_id=star.id, page_size=1), metadata=star.md
        )
    ).next_page_token
    for bad, field in (
        (graph_pb2.ListFollowerIdsRequest(user_id=0), "userId"),
        (graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_size=-1), "pageSize"),
        (
            graph_pb2.ListFollowerIdsRequest(user_id=fans[0].id, page_token=first.next_page_token),
            "pageToken",
        ),
        (
            graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_token=followers_token),
            "pageToken",
        ),
        (graph_pb2.ListFollowerIdsRequest(user_id=star.id, page_token="garbage"), "pageToken"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await graph.ListFollowerIds(bad, metadata=feed)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(err.value), bad


async def test_deleted_account_leaves_the_graph(graph, users, make_person):
    gone, fan, idol = await make_person(), await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=gone.id), metadata=fan.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=gone.md)
    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=gone.id), metadata=gone.md)
    for _ in range(100):  # user.deleted travels outbox -> stream -> graph's consumer group
        if await counts(graph, fan, idol) == [(0, 0), (0, 0)]:
            break
        await asyncio.sleep(0.1)
    assert await counts(graph, fan, idol) == [(0, 0), (0, 0)]
    following = await graph.ListFollowing(
        graph_pb2.ListFollowingRequest(user_id=fan.id), metadata=fan.md
    )
    assert list(following.following) == []


async def test_graph_events_reach_the_stream(graph, make_person, mesh: Mesh):
    owner, fan, other = await make_person(private=True), await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=owner.id), metadata=fan.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=owner.md
    )
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=other.id), metadata=fan.md)
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=other.id), metadata=fan.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=fan.id), metadata=owner.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=other.id), metadata=fan.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=other.id), metadata=fan.md)  # no-op
    await graph.UnmuteUser(graph_pb2.UnmuteUserRequest(user_id=other.id), metadata=fan.md)
    wanted = [
        graph_events.FollowRequested(requester_id=fan.id, target_id=owner.id),
        graph_events.FollowRequestAccepted(requester_id=fan.id, target_id=owner.id),
        graph_events.Unfollowed(follower_id=fan.id, followee_id=other.id),
        graph_events.Blocked(blocker_id=owner.id, blocked_id=fan.id),
        graph_events.Unfollowed(follower_id=fan.id, followee_id=owner.id),  # by the block
        graph_events.Muted(muter_id=fan.id, muted_id=other.id),
        graph_events.Unmuted(muter_id=fan.id, muted_id=other.id),
    ]

    def key(event) -> tuple[str, bytes]:  # two kinds of event can share their bytes
        return event.DESCRIPTOR.full_name, event.SerializeToString(deterministic=True)

    wanted_keys = {key(e) for e in wanted}
    redis = mesh["graph"].host.runtime.redis
    ours = {p.id for p in (owner, fan, other)}
    seen: list = []
    for _ in range(50):
        seen = [
            (envelope, event)
            for envelope, event in await recent_events(redis, "events:graph", 500)
            if {v for _, v in event.ListFields() if isinstance(v, int)} & ours
        ]
        got = {key(e) for _, e in seen}
        if wanted_keys <= got:
            break
        await asyncio.sleep(0.1)
    assert wanted_keys <= got
    follows = [e for _, e in seen if isinstance(e, graph_events.Followed)]
    assert {(f.follower_id, f.followee_id) for f in follows} == {
        (fan.id, owner.id),
        (fan.id, other.id),
    }
    assert all(f.edge_id and f.follow_time.seconds for f in follows)
    mutes = [e for _, e in seen if isinstance(e, graph_events.Muted)]
    assert len(mutes) == 1  # the repeated mute changed nothing and emitted nothing
    for envelope, event in seen:  # the aggregate is the acting user
        if isinstance(event, graph_events.FollowRequestAccepted):
            assert envelope.aggregate_id == event.target_id
        else:
            assert envelope.aggregate_id == next(v for _, v in event.ListFields())


async def test_suggestions_are_only_for_the_caller_unless_a_service_asks(graph, make_person, infra):
    me, other = await make_person(), await make_person()
    mine = await graph.ListSuggestedAccounts(
        graph_pb2.ListSuggestedAccountsRequest(viewer_id=me.id), metadata=me.md
    )
    assert me.id not in [a.user_id for a in mine.accounts]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListSuggestedAccounts(
            graph_pb2.ListSuggestedAccountsRequest(viewer_id=other.id), metadata=me.md
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    as_feed = await graph.ListSuggestedAccounts(
        graph_pb2.ListSuggestedAccountsRequest(viewer_id=other.id), metadata=infra.service_auth()
    )
    assert other.id not in [a.user_id for a in as_feed.accounts]
