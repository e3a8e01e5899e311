"""Chat notifications and push against real PostgreSQL, Redis, graph/post services and a
real local webhook: grouping, refusals, idempotency, read marks, dismissal, filters,
pages, push endpoints and retried webhook delivery."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from google.protobuf.message import Message
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services import registry
from services.chat.eventlog import EventLog, Wakeups
from services.chat.notifications import (
    COMMENT,
    FOLLOW,
    FOLLOW_ACCEPTED,
    FOLLOW_REQUEST,
    LIKE,
    MENTION,
    SHARE,
    Notifications,
)
from services.chat.notifications.senders import PushProviders
from services.chat.push import DELIVERY_HEADER, PushConfig, PushWorker, WebhookSender
from services.kit.channels import open_channel
from services.kit.consumers import Start, consumers_for
from services.kit.db import Database
from services.kit.egress import EgressGuard, system_resolve
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kit.events import seal
from services.kit.ids import IdGenerator
from services.kit.migrations import migrate
from services.kit.pagination import PageTokens

from .conftest import Infra, Mesh, Person, start_mesh, stop_mesh, unique
from .helpers import code_of, violations

CHAT_MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "chat" / "migrations"
IDS = IdGenerator(11)


# ----- fixtures --------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def net(infra: Infra) -> AsyncIterator[Mesh]:
    """The user, graph and post services (and chat once it is registered)."""
    names: tuple[str, ...] = ("user", "graph", "post")
    if registry.get("chat").implemented:
        names += ("media", "chat")  # chat attaches message media through media
    running = await start_mesh(infra, names)
    yield running
    await stop_mesh(running)


@pytest_asyncio.fixture(scope="module")
async def graph_as_chat(infra: Infra, net: Mesh) -> AsyncIterator[graph_pb2_grpc.GraphServiceStub]:
    """Graph as the chat service calls it: with chat's own service credential."""
    channel = open_channel(
        net["graph"].address, service_token=infra.service_credentials("chat").token
    )
    yield graph_pb2_grpc.GraphServiceStub(channel)
    await channel.close()


@pytest.fixture
def graph(net: Mesh) -> graph_pb2_grpc.GraphServiceStub:
    return graph_pb2_grpc.GraphServiceStub(net["graph"].channel)


@pytest.fixture
def posts(net: Mesh) -> post_pb2_grpc.PostServiceStub:
    return post_pb2_grpc.PostServiceStub(net["post"].channel)


@pytest.fixture
def person(net: Mesh, infra: Infra) -> Callable[[], Awaitable[Person]]:
    users = user_pb2_grpc.UserServiceStub(net["user"].channel)

    async def make() -> Person:
        handle = unique("n")
        user = await users.CreateUser(
            user_pb2.CreateUserRequest(
                handle=handle, email=f"{handle}@e.com", password="password123"
            )
        )
        return Person(user.user_id, infra.signer().sign(user.user_id, 1), handle)

    return make


@dataclass
class Presence:
    """Who has an open stream (the chat core's presence, driven by the test)."""

    online: set[int] = field(default_factory=set)

    async def is_online(self, user_ids: Sequence[int]) -> set[int]:
        return self.online & set(user_ids)


async def no_messages(user_id: int) -> tuple[int, int]:
    return (0, 0)


async def example_names_are_public(host: str, port: int) -> list[str]:
    """DNS for the tests' `*.example.com` endpoints (no DNS here): a public address."""
    if host.endswith(".example.com"):
        return ["93.184.215.14"]
    return await system_resolve(host, port)


#: Registration as in production, plus loopback (the local webhook) and example.com names.
TEST_PROVIDERS = PushProviders(
    guard=EgressGuard(allow_loopback=True, resolve=example_names_are_public)
)


def local_sender() -> WebhookSender:
    """The webhook sender with the test guard (the local hook on 127.0.0.1 is allowed)."""
    return WebhookSender(guard=TEST_PROVIDERS.guard)


@dataclass
class Kit:
    n: Notifications
    schema: str
    presence: Presence
    log: EventLog


@pytest_asyncio.fixture
async def kit(db: Database, redis, graph_as_chat, tmp_path: Path) -> AsyncIterator[Kit]:
    """Notifications on a fresh schema migrated like chat's (kit tables + chat migrations)."""
    schema = f"chatn_{uuid.uuid4().hex[:10]}"
    async with db.primary.acquire() as conn:
        await migrate(conn, schema, CHAT_MIGRATIONS)
    presence = Presence()
    log = EventLog(schema)
    n = Notifications(
        db,
        IDS,
        PageTokens(b"test-page-token-secret-0123456789"),
        events=log,
        wakeups=Wakeups(redis),
        graph=graph_as_chat,
        is_online=presence.is_online,
        message_unread=no_messages,
        schema=schema,
        push_config=PushConfig(first_backoff_seconds=0.05, poll_seconds=0.05, lease_seconds=5),
        providers=TEST_PROVIDERS,
    )
    yield Kit(n, schema, presence, log)
    await n.stop()


async def deliver(n: Notifications, event: Message, *, event_id: int | None = None, at=None) -> int:
    """Hands one event to the handlers the way the consumer does; returns its event id."""
    event_id = event_id or IDS.next_id()
    assert await n.handlers().dispatch(
        seal(event, event_id=event_id, aggregate_id=1, occur_time=at)
    )
    return event_id


async def listed(n: Notifications, user_id: int, **request) -> chat_pb2.ListNotificationsResponse:
    return await n.list_notifications(user_id, chat_pb2.ListNotificationsRequest(**request))


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float = 10.0) -> None:
    """Polls `check` (plain or async) until it holds; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def liked(post_id: int, liker: int, author: int) -> post_events.PostLiked:
    return post_events.PostLiked(post_id=post_id, user_id=liker, post_author_id=author)


# ----- grouping --------------------------------------------------------------


async def test_likes_of_one_post_group_with_newest_actors_first(kit: Kit, person) -> None:
    author, a, b, c = [await person() for _ in range(4)]
    n = kit.n
    await deliver(n, liked(500, a.id, author.id))
    first = (await listed(n, author.id)).notifications[0]
    assert (first.type, first.actor_count, list(first.sample_actor_ids)) == (LIKE, 1, [a.id])
    await deliver(n, liked(500, b.id, author.id))
    await deliver(n, liked(500, c.id, author.id))
    page = await listed(n, author.id)
    assert len(page.notifications) == 1  # "c and 2 others liked your post"
    group = page.notifications[0]
    assert group.group_key == "like:500" and group.post_id == 500
    assert (group.actor_id, group.actor_count) == (c.id, 3)
    assert list(group.sample_actor_ids) == [c.id, b.id, a.id]
    assert group.notification_id > first.notification_id  # bumped: sorts first, unread again
    assert not group.read and page.unread_count == 1
    assert group.latest_time.ToDatetime() >= group.create_time.ToDatetime()

    # Liking again (after an unlike) is no new activity: nothing moves.
    await deliver(n, liked(500, a.id, author.id))
    again = (await listed(n, author.id)).notifications[0]
    assert (again.notification_id, again.actor_count) == (group.notification_id, 3)

    # A share of the same post is its own group; a like of another post too.
    await deliver(n, post_events.PostShared(post_id=500, user_id=b.id, post_author_id=author.id))
    await deliver(n, liked(501, b.id, author.id))
    keys = [x.group_key for x in (await listed(n, author.id)).notifications]
    assert keys == ["like:501", "share:500", "like:500"]


async def test_sample_actors_keep_the_eight_newest_while_the_count_keeps_everyone(kit: Kit) -> None:
    # Ids of accounts that do not exist have no relationship at all: allowed.
    author, actors = 9_000_001, list(range(9_100_001, 9_100_011))
    for actor in actors:
        await deliver(kit.n, liked(77, actor, author))
    group = (await listed(kit.n, author)).notifications[0]
    assert group.actor_count == 10
    assert list(group.sample_actor_ids) == actors[::-1][:8]


async def test_a_new_group_reaches_the_recipients_stream_with_its_unread_count(kit: Kit) -> None:
    author, fan = 9_000_002, 9_000_003
    await deliver(kit.n, liked(88, fan, author))
    logged = await kit.log.read(kit.n._db.primary, author, 0, 10)
    kinds = [e.event.WhichOneof("event") for e in logged]
    assert kinds == ["notification", "unread_counts"]
    assert logged[0].event.notification.sample_actor_ids == [fan]
    assert logged[1].event.unread_counts.notifications == 1
    assert await kit.log.read(kit.n._db.primary, fan, 0, 10) == []  # the actor hears nothing


async def test_comments_and_mentions_do_not_group_follows_group_per_day(kit: Kit) -> None:
    n, me, x, y = kit.n, 9_000_010, 9_000_011, 9_000_012
    for comment_id, who in ((1001, x), (1002, y)):
        await deliver(
            n,
            post_events.CommentCreated(
                comment_id=comment_id,
                post_id=900,
                author_id=who,
                post_author_id=me,
                snippet="hi\x07 " + "z" * 200,
            ),
        )
    await deliver(n, post_events.PostCreated(post_id=901, author_id=x, mention_ids=[me, me, x]))
    await deliver(n, post_events.PostCreated(post_id=902, author_id=y, mention_ids=[me]))
    day1 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    await deliver(n, graph_events.Followed(follower_id=x, followee_id=me), at=day1)
    await deliver(
        n, graph_events.Followed(follower_id=y, followee_id=me), at=day1 + timedelta(hours=5)
    )
    await deliver(
        n, graph_events.Followed(follower_id=9_000_013, followee_id=me), at=day1 + timedelta(days=1)
    )
    got = {x.group_key: x for x in (await listed(n, me)).notifications}
    assert set(got) == {
        "comment:1001",
        "comment:1002",
        "mention:901",
        "mention:902",
        "follow:2026-11-20",
        "follow:2026-11-21",
    }
    assert got["comment:1002"].type == COMMENT and got["comment:1002"].comment_id == 1002
    assert got["comment:1001"].snippet == "hi " + "z" * 137  # control chars dropped, 140 max
    assert got["mention:901"].type == MENTION and got["mention:901"].actor_count == 1
    assert got["follow:2026-11-20"].type == FOLLOW and got["follow:2026-11-20"].actor_count == 2
    # The author mentioning themselves is no notification for them.
    assert (await listed(n, x)).notifications == []


async def test_follow_requests_and_acceptance(kit: Kit) -> None:
    n, shy, fan = kit.n, 9_000_020, 9_000_021
    await deliver(n, graph_events.FollowRequested(requester_id=fan, target_id=shy))
    # Accepting emits Followed and FollowRequestAccepted: the requester hears of the
    # acceptance; the one who accepted gets no "new follower" for their own approval.
    await deliver(n, graph_events.Followed(follower_id=fan, followee_id=shy))
    await deliver(n, graph_events.FollowRequestAccepted(requester_id=fan, target_id=shy))
    (request,) = (await listed(n, shy)).notifications
    assert (request.type, request.actor_id) == (FOLLOW_REQUEST, fan)
    (accepted,) = (await listed(n, fan)).notifications
    assert (accepted.type, accepted.actor_id) == (FOLLOW_ACCEPTED, shy)


async def test_concurrent_likes_count_every_distinct_actor(kit: Kit) -> None:
    author, fans = 9_000_025, list(range(9_100_101, 9_100_113))
    await asyncio.gather(*(deliver(kit.n, liked(66, fan, author)) for fan in fans))
    (group,) = (await listed(kit.n, author)).notifications
    assert group.actor_count == 12
    assert len(group.sample_actor_ids) == 8 and set(group.sample_actor_ids) <= set(fans)


# ----- refusals and idempotency ------------------------------------------------


async def test_no_notification_for_your_own_actions(kit: Kit) -> None:
    me = 9_000_030
    await deliver(kit.n, liked(1, me, me))
    await deliver(kit.n, post_events.PostShared(post_id=1, user_id=me, post_author_id=me))
    await deliver(
        kit.n, post_events.CommentCreated(comment_id=5, post_id=1, author_id=me, post_author_id=me)
    )
    await deliver(kit.n, graph_events.Followed(follower_id=me, followee_id=me))
    page = await listed(kit.n, me)
    assert (list(page.notifications), page.unread_count) == ([], 0)


async def test_none_from_blocked_muted_or_blocking_accounts(kit: Kit, person, graph) -> None:
    me, muted, blocked, blocker, friend = [await person() for _ in range(5)]
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=me.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=me.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=me.id), metadata=blocker.md)
    for actor in (muted, blocked, blocker, friend):
        await deliver(kit.n, liked(42, actor.id, me.id))
        await deliver(kit.n, graph_events.Followed(follower_id=actor.id, followee_id=me.id))
    groups = (await listed(kit.n, me.id)).notifications
    assert {g.group_key.split(":")[0] for g in groups} == {"like", "follow"}
    assert all(list(g.sample_actor_ids) == [friend.id] for g in groups)
    assert all(g.actor_count == 1 for g in groups)


async def test_a_followers_only_mention_reaches_only_followers(kit: Kit, person, graph) -> None:
    author, follower, stranger = [await person() for _ in range(3)]
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=follower.md)
    await deliver(
        kit.n,
        post_events.PostCreated(
            post_id=IDS.next_id(),
            author_id=author.id,
            visibility=post_pb2.VISIBILITY_FOLLOWERS,
            mention_ids=[follower.id, stranger.id],
        ),
    )
    assert [g.type for g in (await listed(kit.n, follower.id)).notifications] == [MENTION]
    # The stranger cannot open the post: a notification would reveal it exists.
    assert (await listed(kit.n, stranger.id)).notifications == []
    await deliver(
        kit.n,
        post_events.PostCreated(
            post_id=IDS.next_id(),
            author_id=author.id,
            visibility=post_pb2.VISIBILITY_PUBLIC,
            mention_ids=[stranger.id],
        ),
    )
    assert [g.type for g in (await listed(kit.n, stranger.id)).notifications] == [MENTION]


async def test_a_redelivered_event_counts_once(kit: Kit) -> None:
    author, fan = 9_000_040, 9_000_041
    event_id = await deliver(kit.n, liked(3, fan, author))
    before = (await listed(kit.n, author)).notifications[0]
    await deliver(kit.n, liked(3, fan, author), event_id=event_id)
    # Even a redelivery that would be new activity (other actor) is recognised by its id.
    await deliver(kit.n, liked(3, 9_000_042, author), event_id=event_id)
    after = (await listed(kit.n, author)).notifications[0]
    assert after == before
    assert len(await kit.log.read(kit.n._db.primary, author, 0, 10)) == 2  # one group + count


# ----- read marks, dismissal -------------------------------------------------


async def test_mark_read_only_moves_forward(kit: Kit) -> None:
    n, me = kit.n, 9_000_050
    for post_id in (1, 2, 3):
        await deliver(n, liked(post_id, 9_000_051, me))
    _newest, middle, oldest = (await listed(n, me)).notifications
    counts = await n.mark_read(
        me, chat_pb2.MarkNotificationsReadRequest(up_to_notification_id=middle.notification_id)
    )
    assert counts.notifications == 1
    page = await listed(n, me)
    assert [x.read for x in page.notifications] == [False, True, True]
    assert page.unread_count == 1
    # Going back does not mark anything unread again.
    counts = await n.mark_read(
        me, chat_pb2.MarkNotificationsReadRequest(up_to_notification_id=oldest.notification_id)
    )
    assert counts.notifications == 1
    assert [x.read for x in (await listed(n, me)).notifications] == [False, True, True]
    # Other devices learn the counts from the stream.
    logged = await kit.log.read(n._db.primary, me, 0, 100)
    assert logged[-1].event.unread_counts.notifications == 1
    # Marking far ahead stops at the newest notification: later ones are unread.
    await n.mark_read(me, chat_pb2.MarkNotificationsReadRequest(up_to_notification_id=2**62))
    assert (await n.unread_counts(me)).notifications == 0
    await deliver(n, liked(1, 9_000_052, me))
    assert (await n.unread_counts(me)).notifications == 1
    assert (await listed(n, me)).notifications[0].read is False
    with pytest.raises(InvalidArgument) as bad:
        await n.mark_read(me, chat_pb2.MarkNotificationsReadRequest())
    assert bad.value.violations[0][0] == "upToNotificationId"


async def test_dismiss_hides_a_group_and_another_users_id_is_not_found(kit: Kit) -> None:
    n, me, other = kit.n, 9_000_060, 9_000_061
    await deliver(n, liked(10, 9_000_062, me))
    await deliver(n, liked(10, 9_000_063, me))
    await deliver(n, liked(11, 9_000_062, other))
    (mine,) = (await listed(n, me)).notifications
    (theirs,) = (await listed(n, other)).notifications
    with pytest.raises(NotFound) as refused:
        await n.dismiss(
            me, chat_pb2.DismissNotificationRequest(notification_id=theirs.notification_id)
        )
    with pytest.raises(NotFound) as missing:
        await n.dismiss(me, chat_pb2.DismissNotificationRequest(notification_id=IDS.next_id()))
    # Exactly the answer for an id that does not exist: existence is never revealed.
    assert refused.value.message == f"notification {theirs.notification_id} not found"
    assert (
        missing.value.message.startswith("notification ")
        and refused.value.reason == missing.value.reason
    )
    assert len((await listed(n, other)).notifications) == 1  # untouched
    await n.dismiss(me, chat_pb2.DismissNotificationRequest(notification_id=mine.notification_id))
    page = await listed(n, me)
    assert (list(page.notifications), page.unread_count) == ([], 0)
    # New activity after a dismissal starts the group over.
    await deliver(n, liked(10, 9_000_064, me))
    (fresh,) = (await listed(n, me)).notifications
    assert (list(fresh.sample_actor_ids), fresh.actor_count) == ([9_000_064], 1)


# ----- filters and pages -----------------------------------------------------


async def test_type_filters_and_keyset_pages(kit: Kit) -> None:
    n, me = kit.n, 9_000_070
    for i in range(5):
        await deliver(n, liked(100 + i, 9_000_071, me))
    for i in range(3):
        await deliver(
            n, post_events.PostShared(post_id=200 + i, user_id=9_000_071, post_author_id=me)
        )
    await deliver(n, graph_events.Followed(follower_id=9_000_071, followee_id=me))

    likes = await listed(n, me, types=[LIKE])
    assert [x.type for x in likes.notifications] == [LIKE] * 5
    no_likes = await listed(n, me, exclude_types=[LIKE, FOLLOW])
    assert [x.type for x in no_likes.notifications] == [SHARE] * 3
    assert no_likes.unread_count == 9  # the total, not the filtered page
    both = await listed(n, me, types=[LIKE, SHARE], exclude_types=[SHARE])
    assert len(both.notifications) == 5

    seen: list[int] = []
    token = ""
    while True:
        page = await listed(n, me, page_size=2, page_token=token)
        assert len(page.notifications) <= 2
        seen += [x.notification_id for x in page.notifications]
        token = page.next_page_token
        if not token:
            break
    everything = [x.notification_id for x in (await listed(n, me)).notifications]
    assert seen == everything and len(seen) == 9 and seen == sorted(seen, reverse=True)

    first = await listed(n, me, page_size=2, types=[LIKE])
    with pytest.raises(InvalidArgument) as other_filter:  # a token belongs to its filters
        await listed(n, me, page_size=2, page_token=first.next_page_token)
    assert other_filter.value.violations[0][0] == "pageToken"
    with pytest.raises(InvalidArgument) as other_user:
        await listed(n, 9_000_072, page_size=2, types=[LIKE], page_token=first.next_page_token)
    assert other_user.value.violations[0][0] == "pageToken"
    with pytest.raises(InvalidArgument) as bad_type:
        await listed(n, me, types=[0])
    assert bad_type.value.violations[0][0] == "types"
    with pytest.raises(InvalidArgument) as bad_exclude:
        await listed(n, me, exclude_types=[99])
    assert bad_exclude.value.violations[0][0] == "excludeTypes"
    assert len((await listed(n, me, page_size=1000)).notifications) == 9  # clamped to 100


# ----- push endpoints --------------------------------------------------------


def endpoint(url: str) -> chat_pb2.CreatePushEndpointRequest:
    return chat_pb2.CreatePushEndpointRequest(push_endpoint=chat_pb2.PushEndpoint(url=url))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https:///nohost",
        "https://user:pw@example.com/hook",
        "https://example.com/a b",
        "https://example.com:99999/hook",
        "https://example.com/" + "a" * 2048,
        "javascript:alert(1)",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/hook",
    ],
)
async def test_push_endpoint_urls_are_validated(kit: Kit, url: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await kit.n.create_push_endpoint(1, endpoint(url))
    assert [f for f, _ in bad.value.violations] == ["pushEndpoint.url"]


async def test_push_endpoints_are_idempotent_limited_and_private(kit: Kit) -> None:
    n, me, other = kit.n, 9_000_080, 9_000_081
    first = await n.create_push_endpoint(me, endpoint("https://push.example.com/a"))
    again = await n.create_push_endpoint(me, endpoint("https://push.example.com/a"))
    assert first == again and first.push_endpoint_id > 0 and first.create_time.seconds > 0
    for url in ("http://localhost:9/x", "http://127.0.0.1/x", "http://[::1]:8080/x"):
        await n.create_push_endpoint(me, endpoint(url))
    for i in range(6):
        await n.create_push_endpoint(me, endpoint(f"https://push.example.com/{i}"))
    with pytest.raises(FailedPrecondition):  # the eleventh
        await n.create_push_endpoint(me, endpoint("https://push.example.com/11"))
    assert (await n.create_push_endpoint(me, endpoint("https://push.example.com/a"))) == first
    with pytest.raises(NotFound):
        await n.delete_push_endpoint(
            other, chat_pb2.DeletePushEndpointRequest(push_endpoint_id=first.push_endpoint_id)
        )
    await n.delete_push_endpoint(
        me, chat_pb2.DeletePushEndpointRequest(push_endpoint_id=first.push_endpoint_id)
    )
    with pytest.raises(NotFound):
        await n.delete_push_endpoint(
            me, chat_pb2.DeletePushEndpointRequest(push_endpoint_id=first.push_endpoint_id)
        )
    await n.create_push_endpoint(me, endpoint("https://push.example.com/11"))  # room again


async def test_the_endpoint_limit_holds_under_concurrent_creates(kit: Kit) -> None:
    me = 9_000_085
    results = await asyncio.gather(
        *(
            kit.n.create_push_endpoint(me, endpoint(f"https://p.example.com/{i}"))
            for i in range(15)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, chat_pb2.PushEndpoint) for r in results) == 10
    assert all(isinstance(r, (chat_pb2.PushEndpoint, FailedPrecondition)) for r in results)


# ----- webhook delivery ------------------------------------------------------


@dataclass
class Hook:
    """A real HTTP server on 127.0.0.1 answering with the scripted statuses, then 200."""

    url: str
    script: list[int]
    calls: list[tuple[str, dict]] = field(default_factory=list)


@pytest_asyncio.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook("", [])

    async def receive(request: web.Request) -> web.Response:
        state.calls.append((request.headers.get(DELIVERY_HEADER, ""), await request.json()))
        status = state.script.pop(0) if state.script else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/hook"
    yield state
    await runner.cleanup()


async def pending(kit: Kit) -> int:
    return int(
        await kit.n._db.primary.fetchval(f"SELECT count(*) FROM {kit.schema}.push_deliveries")
    )


async def test_offline_recipients_get_a_webhook_push_retried_after_a_failure(
    kit: Kit, hook: Hook
) -> None:
    me, online_user = 9_000_090, 9_000_091
    await kit.n.create_push_endpoint(me, endpoint(hook.url))
    await kit.n.create_push_endpoint(online_user, endpoint(hook.url + "?online"))
    kit.presence.online.add(online_user)
    hook.script = [503]  # the first attempt fails
    kit.n.start()
    await deliver(kit.n, liked(7, 9_000_092, me))
    await deliver(kit.n, liked(7, 9_000_092, online_user))  # has an open stream: no push
    await until(lambda: len(hook.calls) >= 2)
    await until(lambda: kit.n.push_worker.stats["delivered"] == 1)
    (first_id, body), (second_id, again) = hook.calls
    assert first_id == second_id and int(first_id) > 0  # the same delivery, retried
    assert body == again
    assert body["notification"]["type"] == "NOTIFICATION_TYPE_LIKE"
    assert body["notification"]["sampleActorIds"] == [str(9_000_092)]  # proto3 JSON
    assert kit.n.push_worker.stats["failed_attempts"] == 1
    assert await pending(kit) == 0
    await asyncio.sleep(0.2)
    assert len(hook.calls) == 2  # nothing for the online user, nothing sent twice


async def test_a_push_is_given_up_after_its_attempts(kit: Kit, hook: Hook, db: Database) -> None:
    me = 9_000_100
    await kit.n.create_push_endpoint(me, endpoint(hook.url))
    hook.script = [500] * 10
    worker = PushWorker(
        db,
        WebhookSender(timeout_seconds=2, guard=TEST_PROVIDERS.guard),
        schema=kit.schema,
        config=PushConfig(max_attempts=3, first_backoff_seconds=0.01, poll_seconds=0.02),
    )
    await deliver(kit.n, liked(8, 9_000_101, me))
    assert await pending(kit) == 1
    worker.start()
    try:
        await until(lambda: worker.stats["given_up"] == 1)
    finally:
        await worker.stop()
    assert len(hook.calls) == 3 and await pending(kit) == 0


async def test_a_refusal_is_not_retried_and_410_removes_the_endpoint(
    kit: Kit, hook: Hook, db: Database
) -> None:
    me = 9_000_110
    await kit.n.create_push_endpoint(me, endpoint(hook.url))
    worker = PushWorker(
        db,
        local_sender(),
        schema=kit.schema,
        config=PushConfig(first_backoff_seconds=0.01),
    )
    hook.script = [400]
    await deliver(kit.n, liked(9, 9_000_111, me))
    assert await worker.run_once() == 1
    assert worker.stats["given_up"] == 1 and await pending(kit) == 0
    hook.script = [410]
    await deliver(kit.n, liked(10, 9_000_111, me))
    assert await worker.run_once() == 1
    assert worker.stats["endpoints_gone"] == 1
    assert (
        await db.primary.fetchval(
            f"SELECT count(*) FROM {kit.schema}.push_endpoints WHERE user_id = $1", me
        )
        == 0
    )


async def test_instances_share_deliveries_without_sending_one_twice(
    kit: Kit, hook: Hook, db: Database
) -> None:
    users = list(range(9_000_200, 9_000_230))
    for u in users:
        await kit.n.create_push_endpoint(u, endpoint(hook.url))
    async with db.transaction() as conn:
        await kit.n.enqueue_push(
            conn, users, chat_pb2.ChatEvent(unread_counts=chat_pb2.UnreadCounts(messages=1))
        )
    assert await pending(kit) == 30
    config = PushConfig(batch=10)
    one = PushWorker(db, local_sender(), schema=kit.schema, config=config)
    two = PushWorker(db, local_sender(), schema=kit.schema, config=config)
    while await pending(kit):
        await asyncio.gather(one.run_once(), two.run_once())
    ids = [delivery for delivery, _ in hook.calls]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert one.stats["delivered"] > 0 and two.stats["delivered"] > 0
    assert hook.calls[0][1] == {"unreadCounts": {"messages": "1"}}


async def test_a_lease_left_by_a_crashed_worker_runs_out_and_another_sends(
    kit: Kit, hook: Hook, db: Database
) -> None:
    me = 9_000_310
    await kit.n.create_push_endpoint(me, endpoint(hook.url))
    async with db.transaction() as conn:
        await kit.n.enqueue_push(
            conn, [me], chat_pb2.ChatEvent(unread_counts=chat_pb2.UnreadCounts())
        )
    crashed = PushWorker(
        db,
        local_sender(),
        schema=kit.schema,
        config=PushConfig(lease_seconds=0.3),
    )
    assert len(await crashed._claim()) == 1  # claimed, then the instance "dies"
    survivor = PushWorker(db, local_sender(), schema=kit.schema)
    assert await survivor.run_once() == 0  # leased: not sent twice meanwhile
    await asyncio.sleep(0.4)
    assert await survivor.run_once() == 1
    assert len(hook.calls) == 1 and await pending(kit) == 0


async def test_enqueue_push_is_part_of_the_callers_transaction(kit: Kit, db: Database) -> None:
    me = 9_000_300
    await kit.n.create_push_endpoint(me, endpoint("https://push.example.com/x"))

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as conn:
            await kit.n.enqueue_push(conn, [me], chat_pb2.ChatEvent())
            raise Abort
    assert await pending(kit) == 0


# ----- through the real post and graph services --------------------------------


async def test_likes_comments_and_follows_through_the_real_services(
    kit: Kit, person, posts, graph, redis
) -> None:
    """The real services publish; a consumer group from `$` (as chat runs it) records."""
    author, a, b, c, muted = [await person() for _ in range(5)]
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=author.md)
    consumers = consumers_for(
        redis,
        f"test-notifications-{uuid.uuid4().hex[:8]}",
        kit.n.handlers(),
        start=Start.LATEST,
        block_ms=100,
    )
    for consumer in consumers:
        await consumer.ensure_group()
        consumer.start()
    try:
        post = await posts.CreatePost(
            post_pb2.CreatePostRequest(post=post_pb2.Post(text=f"hello @{a.handle}")),
            metadata=author.md,
        )
        for fan in (a, b, c, muted, author):
            await posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=fan.md)
        comment = await posts.CreateComment(
            post_pb2.CreateCommentRequest(
                post_id=post.post_id, comment=post_pb2.Comment(text="nice one")
            ),
            metadata=b.md,
        )
        await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=c.md)

        async def arrived() -> bool:
            keys = {x.group_key: x for x in (await listed(kit.n, author.id)).notifications}
            like = keys.get(f"like:{post.post_id}")
            return like is not None and like.actor_count == 3 and len(keys) == 3

        await until(arrived)
        got = {x.group_key: x for x in (await listed(kit.n, author.id)).notifications}
        like = got[f"like:{post.post_id}"]
        assert list(like.sample_actor_ids) == [c.id, b.id, a.id]  # no muted fan, not the author
        assert got[f"comment:{comment.comment_id}"].snippet == "nice one"
        assert any(k.startswith("follow:") for k in got)
        await until(lambda: _has(kit, a.id, f"mention:{post.post_id}"))
    finally:
        for consumer in consumers:
            await consumer.stop()


async def _has(kit: Kit, user_id: int, key: str) -> bool:
    return any(x.group_key == key for x in (await listed(kit.n, user_id)).notifications)


# ----- through the chat service itself (once chat is registered) -----------------


@pytest.fixture
def chat(net: Mesh) -> chat_pb2_grpc.ChatServiceStub:
    if "chat" not in net.services:
        pytest.skip("chat is not registered in services/registry.py yet")
    return chat_pb2_grpc.ChatServiceStub(net["chat"].channel)


async def test_the_chat_service_groups_counts_marks_and_refuses(chat, person, posts, graph) -> None:
    author, a, b = [await person() for _ in range(3)]
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="look")), metadata=author.md
    )
    for fan in (a, b):
        await posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=fan.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=a.md)

    async def grouped() -> bool:
        page = await chat.ListNotifications(chat_pb2.ListNotificationsRequest(), metadata=author.md)
        return any(
            x.group_key == f"like:{post.post_id}" and x.actor_count == 2 for x in page.notifications
        ) and any(x.type == FOLLOW for x in page.notifications)

    await until(grouped, seconds=20)
    page = await chat.ListNotifications(chat_pb2.ListNotificationsRequest(), metadata=author.md)
    like = next(x for x in page.notifications if x.type == LIKE)
    assert list(like.sample_actor_ids) == [b.id, a.id] and page.unread_count == 2
    counts = await chat.GetUnreadCounts(chat_pb2.GetUnreadCountsRequest(), metadata=author.md)
    assert counts.notifications == 2
    newest = page.notifications[0].notification_id
    counts = await chat.MarkNotificationsRead(
        chat_pb2.MarkNotificationsReadRequest(up_to_notification_id=newest), metadata=author.md
    )
    assert counts.notifications == 0
    assert (
        await code_of(
            chat.DismissNotification(
                chat_pb2.DismissNotificationRequest(notification_id=newest), metadata=a.md
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    try:
        await chat.CreatePushEndpoint(
            chat_pb2.CreatePushEndpointRequest(
                push_endpoint=chat_pb2.PushEndpoint(url="http://example.com/hook")
            ),
            metadata=author.md,
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(violations(err)) == {"pushEndpoint.url"}
    else:
        pytest.fail("an http URL to another host was accepted")


async def test_a_chat_message_is_pushed_to_an_offline_member(
    chat, person, graph, hook: Hook
) -> None:
    sender, receiver = await person(), await person()
    # The receiver follows the sender, so the direct conversation is no message request.
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=sender.id), metadata=receiver.md)
    await chat.CreatePushEndpoint(
        chat_pb2.CreatePushEndpointRequest(push_endpoint=chat_pb2.PushEndpoint(url=hook.url)),
        metadata=receiver.md,
    )
    conversation = await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(
                type=chat_pb2.CONVERSATION_TYPE_DIRECT, member_ids=[receiver.id]
            )
        ),
        metadata=sender.md,
    )
    await chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=conversation.conversation_id, message=chat_pb2.Message(text="ping")
        ),
        metadata=sender.md,
    )
    await until(lambda: any("message" in body for _, body in hook.calls), seconds=15)
    (body,) = [body for _, body in hook.calls if "message" in body]
    assert body["message"]["text"] == "ping"
    assert body["message"]["senderId"] == str(sender.id)


async def test_a_message_request_is_not_pushed(chat, person, hook: Hook) -> None:
    stranger, receiver = await person(), await person()
    await chat.CreatePushEndpoint(
        chat_pb2.CreatePushEndpointRequest(push_endpoint=chat_pb2.PushEndpoint(url=hook.url)),
        metadata=receiver.md,
    )
    conversation = await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(
                type=chat_pb2.CONVERSATION_TYPE_DIRECT, member_ids=[receiver.id]
            )
        ),
        metadata=stranger.md,
    )
    await chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=conversation.conversation_id, message=chat_pb2.Message(text="hi?")
        ),
        metadata=stranger.md,
    )
    # Pushes are queued before SendMessage returns; the worker polls every second.
    await asyncio.sleep(1.5)
    assert hook.calls == []
