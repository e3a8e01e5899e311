"""Search (issue 13) over real gRPC with the real user, graph and post services, real PG/Redis.

Visibility is proven from the forbidden viewer's side, by searching for a word
only the hidden post contains, both through the RPC and against the search SQL
alone (so the rule is shown to live in the query, not in a filter after it).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import events_pb2 as user_events
from socialmesh.user.v1 import user_pb2

from services.kit.consumers import EventMeta
from services.kit.events import seal
from services.kit.ratelimit import RateLimiter
from services.post.search import parse_post_query
from services.post.search_projection import SearchProjection
from services.user.search import UserSearch

from .conftest import Infra, Mesh, Person
from .helpers import eventually, publish, search_ids, violations, word
from .search_support import sql_ids

RELEVANCE = post_pb2.SEARCH_ORDER_RELEVANCE
NEWEST = post_pb2.SEARCH_ORDER_NEWEST
HOSTILE = [
    "'; DROP TABLE post.posts; --",
    '" OR 1=1 --',
    '"unbalanced quote',
    "((((",
    "a & | ! <-> :* b",
    "-",
    "--",
    "OR",
    "\\",
    "%_%",
    "🎉🔥💀",
    "\uff46\uff55\uff4c\uff4c \ufb01ne",  # full-width letters, a ligature
    "from: @ # #",
    "#" * 200,
    "@" * 50,
    "$1 $2 ::text",
    "\u202e\u200b\ufeff",
    "x" * 100,
]


async def projected(mesh: Mesh, sql: str, *args: object) -> bool:
    return bool(await mesh["post"].host.runtime.db.primary.fetchval(sql, *args))


async def make_user(users, infra: Infra, handle: str, display_name: str = "") -> Person:
    user = await users.CreateUser(
        user_pb2.CreateUserRequest(
            handle=handle,
            email=f"{handle}@e.com",
            password="password123",
            display_name=display_name,
        )
    )
    return Person(user.user_id, infra.signer().sign(user.user_id, 1), handle)


# -- posts: visibility ----------------------------------------------------------------


async def test_followers_only_posts_are_found_only_by_approved_followers(
    posts, graph, make_person, mesh
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    secret = word()
    post = await publish(
        posts, author, f"members {secret}", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=fan.md)

    async def fan_sees() -> bool:
        return await search_ids(posts, secret, fan) == [post.post_id]

    await eventually(fan_sees)
    assert await search_ids(posts, secret, author) == [post.post_id]
    assert await search_ids(posts, secret, stranger) == []
    assert await search_ids(posts, secret) == []  # anonymous
    # The rule is in the SQL itself.
    assert await sql_ids(mesh, secret, stranger) == []
    assert await sql_ids(mesh, secret, None) == []
    assert await sql_ids(mesh, secret, fan) == [post.post_id]

    # Unfollowing takes it away again.
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=author.id), metadata=fan.md)
    assert await search_ids(posts, secret, fan) == []

    async def sql_hides() -> bool:
        return await sql_ids(mesh, secret, fan) == []

    await eventually(sql_hides)


async def test_private_accounts_posts_are_found_only_by_approved_followers(
    posts, graph, make_person, mesh
):
    author = await make_person(private=True)
    approved, pending, stranger = await make_person(), await make_person(), await make_person()
    secret = word()
    post = await publish(posts, author, f"public post of a private account {secret}")
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=approved.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=approved.id), metadata=author.md
    )
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=pending.md)

    async def private_projected() -> bool:
        return await projected(
            mesh, "SELECT is_private FROM post.search_authors WHERE user_id = $1", author.id
        )

    await eventually(private_projected)

    async def approved_sees() -> bool:
        return await search_ids(posts, secret, approved) == [post.post_id]

    await eventually(approved_sees)
    for viewer in (pending, stranger, None):
        assert await search_ids(posts, secret, viewer) == []
        assert await sql_ids(mesh, secret, viewer) == []
    assert await sql_ids(mesh, secret, approved) == [post.post_id]


@pytest.mark.parametrize("direction", ["author_blocks_viewer", "viewer_blocks_author"])
async def test_nothing_is_found_across_a_block(posts, graph, make_person, mesh, direction):
    author, viewer = await make_person(), await make_person()
    secret = word()
    post = await publish(posts, author, f"blocked {secret}")
    assert await search_ids(posts, secret, viewer) == [post.post_id]
    blocker, blocked = (author, viewer) if direction == "author_blocks_viewer" else (viewer, author)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md)

    async def block_projected() -> bool:
        return await projected(
            mesh,
            """SELECT blocking FROM post.search_blocks
               WHERE blocker_id = $1 AND blocked_id = $2""",
            blocker.id,
            blocked.id,
        )

    await eventually(block_projected)
    assert await search_ids(posts, secret, viewer) == []
    assert await sql_ids(mesh, secret, viewer) == []
    assert await search_ids(posts, secret) == [post.post_id]  # others still find it

    await graph.UnblockUser(graph_pb2.UnblockUserRequest(user_id=blocked.id), metadata=blocker.md)

    async def found_again() -> bool:
        return await search_ids(posts, secret, viewer) == [post.post_id]

    await eventually(found_again)


async def test_deleted_posts_and_deleted_authors_are_never_found(posts, users, make_person, mesh):
    author, other = await make_person(), await make_person()
    secret = word()
    gone = await publish(posts, author, f"soon gone {secret}")
    await publish(posts, other, f"other author {secret}")
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=gone.post_id), metadata=author.md)
    assert gone.post_id not in await search_ids(posts, secret)
    assert gone.post_id not in await sql_ids(mesh, secret, author)

    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=other.id), metadata=other.md)

    async def author_gone() -> bool:
        return await sql_ids(mesh, secret, None) == []

    await eventually(author_gone)
    assert await search_ids(posts, secret) == []


# -- posts: relevance, syntax, filters -------------------------------------------------


async def test_phrase_beats_scattered_words_and_recency_breaks_ties(posts, make_person):
    author = await make_person()
    w = word()
    scattered = await publish(
        posts, author, f"red paint on the wall and a very {w} balloon that is big"
    )
    phrase = await publish(posts, author, f"a big red {w} balloon")
    older_tie = await publish(posts, author, f"tie {w} breaker")
    newer_tie = await publish(posts, author, f"tie {w} breaker")
    found = await search_ids(posts, f"big red {w}")
    assert found == [phrase.post_id, scattered.post_id]
    # Form-encoded spaces ('+', passed through by the edge) are spaces.
    assert await search_ids(posts, f"big+red+{w}") == found
    found = await search_ids(posts, f"tie {w} breaker")
    assert found[:2] == [newer_tie.post_id, older_tie.post_id]
    # Newest order is by time alone.
    newest = await search_ids(posts, w, order=NEWEST)
    assert newest == [newer_tie.post_id, older_tie.post_id, phrase.post_id, scattered.post_id]


async def test_websearch_syntax_accents_and_case(posts, make_person):
    author = await make_person()
    w = word()
    cats = await publish(posts, author, f"Crème BRÛLÉE and cats {w}")
    dogs = await publish(posts, author, f"dogs only {w}")
    both = await publish(posts, author, f"dogs chasing cats {w}")
    assert await search_ids(posts, f"creme brulee {w}") == [cats.post_id]
    assert await search_ids(posts, f"CRÈME {w}") == [cats.post_id]
    assert sorted(await search_ids(posts, f"cats OR dogs {w}")) == sorted(
        [cats.post_id, dogs.post_id, both.post_id]
    )
    assert await search_ids(posts, f"cats -dogs {w}") == [cats.post_id]
    assert await search_ids(posts, f'"chasing cats" {w}') == [both.post_id]
    assert await search_ids(posts, f'"cats chasing" {w}') == []


async def test_tag_mention_and_author_filters(posts, make_person):
    alice, bob = await make_person(), await make_person()
    w, tag = word(), word()
    tagged = await publish(posts, alice, f"about #{tag} {w}")
    mention = await publish(posts, alice, f"hi @{bob.handle} {w}")
    by_bob = await publish(posts, bob, f"bob says {w} #{tag}")
    assert sorted(await search_ids(posts, f"#{tag}")) == sorted([tagged.post_id, by_bob.post_id])
    assert await search_ids(posts, f"#{tag.upper()} from:{bob.handle}") == [by_bob.post_id]
    assert await search_ids(posts, f"{w} @{bob.handle}") == [mention.post_id]
    assert await search_ids(posts, f"from:@{alice.handle} {w} -hi") == [tagged.post_id]
    assert await search_ids(posts, f"{w} from:nobody_{w}") == []


async def test_query_parsing_keeps_filters_out_of_the_text():
    q = parse_post_query('  "big deal" #Launch from:Alice_1 @bob_2 -spam #launch ')
    assert q.tags == ["launch"] and q.authors == ["alice_1"] and q.mentions == ["bob_2"]
    assert q.text == '"big deal" -spam'


# -- posts: hostile input ------------------------------------------------------------


async def test_hostile_queries_never_fail(posts, users, make_person):
    """Each is an answer (matches or none), never an error: no 500, no syntax error."""
    viewer = await make_person()
    people = users
    for query in HOSTILE:
        for md in (None, viewer.md):
            for order in (RELEVANCE, NEWEST):
                await posts.SearchPosts(
                    post_pb2.SearchPostsRequest(query=query[:500], order=order), metadata=md
                )
            await posts.SearchTags(post_pb2.SearchTagsRequest(query=query[:100]), metadata=md)
            await people.SearchUsers(user_pb2.SearchUsersRequest(query=query[:100]), metadata=md)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("", "required"),
        ("   \t ", "required"),
        ("x" * 501, "at most"),
        ("x" * 10_000, "at most"),
        ("x" * 10_001, "at most"),
        ("nul\x00byte", "NUL"),
    ],
)
async def test_bad_queries_are_a_clear_invalid_argument_naming_query(posts, users, query, problem):
    calls = [
        posts.SearchPosts(post_pb2.SearchPostsRequest(query=query)),
        posts.SearchTags(post_pb2.SearchTagsRequest(query=query)),
        users.SearchUsers(user_pb2.SearchUsersRequest(query=query)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert problem in violations(err.value)["query"]


async def test_page_tokens_are_bound_to_query_and_viewer(posts, make_person):
    author, other = await make_person(), await make_person()
    w = word()
    for i in range(3):
        await publish(posts, author, f"{w} number {i}")
    first = await posts.SearchPosts(
        post_pb2.SearchPostsRequest(query=w, page_size=1), metadata=author.md
    )
    assert first.next_page_token
    for request, md in [
        (post_pb2.SearchPostsRequest(query=w + "x", page_token=first.next_page_token), author.md),
        (post_pb2.SearchPostsRequest(query=w, page_token=first.next_page_token), other.md),
        (post_pb2.SearchPostsRequest(query=w, page_token="garbage"), author.md),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await posts.SearchPosts(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pageToken" in violations(err.value)


# -- posts: pagination ---------------------------------------------------------------


@pytest.mark.parametrize("order", [RELEVANCE, NEWEST])
async def test_pagination_is_stable_under_concurrent_posting(posts, make_person, order):
    authors = [await make_person() for _ in range(4)]
    w = word()
    before = []
    for i in range(24):
        # Varied texts: different ranks, so relevance order is not just time order.
        text = f"{w} " + " ".join(["filler"] * (i % 5)) + f" {w} item {i}"
        before.append((await publish(posts, authors[i % 4], text)).post_id)

    seen: list[int] = []
    token = ""
    writer_posts: list[int] = []

    async def keep_posting() -> None:
        for i in range(12):
            writer_posts.append((await publish(posts, authors[i % 4], f"{w} {w} late {i}")).post_id)
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_posting())
    while True:
        reply = await posts.SearchPosts(
            post_pb2.SearchPostsRequest(query=w, page_size=5, page_token=token, order=order)
        )
        seen.extend(p.post_id for p in reply.posts)
        token = reply.next_page_token
        await asyncio.sleep(0.02)
        if not token:
            break
    await writer
    assert len(seen) == len(set(seen))  # no repeats
    assert sorted(seen) == sorted(before)  # no skips, nothing from after the first page
    if order == NEWEST:
        assert seen == sorted(before, reverse=True)
    # A fresh search sees the late posts.
    fresh = await search_ids(posts, w, page_size=100)
    assert set(writer_posts) <= set(fresh)


# -- tags ----------------------------------------------------------------------------


async def test_tag_prefix_search_counts_live_public_posts(posts, make_person):
    author = await make_person()
    stem = word()
    popular, rare = f"{stem}pop", f"{stem}rare"
    made = [await publish(posts, author, f"#{popular} {i}") for i in range(3)]
    await publish(posts, author, f"#{rare} and #{popular.upper()}")
    await publish(posts, author, f"#{rare}", visibility=post_pb2.VISIBILITY_FOLLOWERS)
    reply = await posts.SearchTags(post_pb2.SearchTagsRequest(query=f"#{stem}"))
    assert [(t.tag, t.post_count) for t in reply.tags] == [(popular, 4), (rare, 1)]
    await posts.DeletePost(post_pb2.DeletePostRequest(post_id=made[0].post_id), metadata=author.md)
    page = await posts.SearchTags(post_pb2.SearchTagsRequest(query=stem.upper(), page_size=1))
    assert [(t.tag, t.post_count) for t in page.tags] == [(popular, 3)]
    rest = await posts.SearchTags(
        post_pb2.SearchTagsRequest(query=stem, page_size=1, page_token=page.next_page_token)
    )
    assert [t.tag for t in rest.tags] == [rare] and rest.next_page_token == ""
    assert not (await posts.SearchTags(post_pb2.SearchTagsRequest(query=f"{stem}zz"))).tags


# -- people --------------------------------------------------------------------------


async def test_typeahead_exact_handle_beats_prefix_beats_fuzzy_name(users, infra):
    w = word()
    exact = await make_user(users, infra, w, "Someone Else")
    longer = await make_user(users, infra, f"{w}_fan", "Another Person")
    named = await make_user(users, infra, f"x{w[1:]}", w.upper())  # display name == query
    fuzzy = await make_user(users, infra, f"y{w[1:]}", f"{w[:-1]}")  # one letter short

    async def found(query: str, viewer: Person | None = None) -> list[int]:
        reply = await users.SearchUsers(
            user_pb2.SearchUsersRequest(query=query), metadata=viewer.md if viewer else None
        )
        return [u.user_id for u in reply.users]

    # Exact handle, then handle prefix, then a name match.
    assert await found(w) == [exact.id, longer.id, named.id]
    assert await found(f"@{w.upper()}") == [exact.id, longer.id, named.id]
    # A typo matches no handle or name prefix: fuzzy (trigram) names answer, and a
    # fuzzy name never outranks a handle when both match.
    typo = await found(w[:-1] + "z")
    assert fuzzy.id in typo and exact.id not in typo
    both = await found(w[:-1])
    assert both[:2] == [exact.id, longer.id] and fuzzy.id in both[2:]
    # Typeahead: every prefix of the handle finds it (letters typed so far).
    for n in (4, 7, len(w)):
        assert exact.id in await found(w[:n])
    assert (await found(w[:7]))[:2] == [exact.id, longer.id]


async def test_typeahead_on_names_folds_accents_and_tolerates_typos(users, infra):
    w = word()
    jose = await make_user(users, infra, f"j{w}", f"José Ñúñez {w}")
    maxi = await make_user(users, infra, f"m{w}", f"Maximilian {w}")

    async def found(query: str) -> list[int]:
        reply = await users.SearchUsers(user_pb2.SearchUsersRequest(query=query))
        return [u.user_id for u in reply.users]

    assert jose.id in await found(f"jose nunez {w}")
    assert jose.id in await found(f"JOSÉ {w}")
    assert maxi.id in await found(f"Maximillian {w}")  # a typo
    assert maxi.id in await found(f"maxim {w}")


async def test_people_search_ranks_followed_accounts_first(users, graph, infra, make_person):
    w = word()
    first = await make_user(users, infra, f"a{w}", f"Twin {w}")
    second = await make_user(users, infra, f"b{w}", f"Twin {w}")
    viewer = await make_person()

    async def order() -> list[int]:
        reply = await users.SearchUsers(
            user_pb2.SearchUsersRequest(query=f"twin {w}"), metadata=viewer.md
        )
        return [u.user_id for u in reply.users]

    assert set(await order()) == {first.id, second.id}
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=first.id), metadata=viewer.md)

    async def followed_first() -> bool:
        return (await order())[0] == first.id

    await eventually(followed_first)
    await graph.UnfollowUser(graph_pb2.UnfollowUserRequest(user_id=first.id), metadata=viewer.md)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=second.id), metadata=viewer.md)

    async def other_first() -> bool:
        return (await order())[0] == second.id

    await eventually(other_first)
    # Follower counts break the remaining ties, for anonymous viewers too.
    anonymous = await users.SearchUsers(user_pb2.SearchUsersRequest(query=f"twin {w}"))
    assert [u.user_id for u in anonymous.users] == [second.id, first.id]


@pytest.mark.parametrize("direction", ["they_block_viewer", "viewer_blocks_them"])
async def test_people_search_never_returns_accounts_across_a_block(
    users, graph, infra, make_person, mesh, direction
):
    w = word()
    target = await make_user(users, infra, w, f"Blocky {w}")
    viewer = await make_person()

    async def found() -> list[int]:
        reply = await users.SearchUsers(user_pb2.SearchUsersRequest(query=w), metadata=viewer.md)
        return [u.user_id for u in reply.users]

    assert await found() == [target.id]
    blocker, blocked = (target, viewer) if direction == "they_block_viewer" else (viewer, target)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md)

    async def gone_in_sql() -> bool:
        search = mesh["user"].host.runtime
        rows = await search.db.primary.fetch(
            """SELECT 1 FROM "user".search_blocks WHERE blocker_id = $1 AND blocked_id = $2
               AND blocking""",
            blocker.id,
            blocked.id,
        )
        return bool(rows)

    await eventually(gone_in_sql)
    assert await found() == []
    # The query itself leaves the account out (not the presentation after it).
    rt = mesh["user"].host.runtime
    people_sql = UserSearch(
        rt.db, rt.page_tokens, RateLimiter(rt.redis, "t", limit=1, window_seconds=1)
    )
    hits = await people_sql._fetch(viewer.id, w, w, None, 10)
    assert hits == []
    assert [h.record.user_id for h in await people_sql._fetch(None, w, w, None, 10)] == [target.id]
    anonymous = await users.SearchUsers(user_pb2.SearchUsersRequest(query=w))
    assert [u.user_id for u in anonymous.users] == [target.id]


async def test_private_accounts_appear_with_the_limited_view(users, infra, make_person):
    w = word()
    hidden = await make_user(users, infra, w, f"Private {w}")
    await users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(user_id=hidden.id, is_private=True, bio="secret bio"),
            update_mask={"paths": ["is_private", "bio"]},
        ),
        metadata=hidden.md,
    )
    viewer = await make_person()
    for md in (None, viewer.md):
        reply = await users.SearchUsers(user_pb2.SearchUsersRequest(query=w), metadata=md)
        (user,) = reply.users
        assert user.user_id == hidden.id and user.is_limited_view and user.bio == ""
        assert user.handle == w and user.display_name == f"Private {w}"


async def test_people_search_pages_without_repeats(users, infra):
    w = word()
    made = {(await make_user(users, infra, f"{w}{i:02d}", f"Pager {w}")).id for i in range(7)}
    seen: list[int] = []
    token = ""
    while True:
        reply = await users.SearchUsers(
            user_pb2.SearchUsersRequest(query=w, page_size=3, page_token=token)
        )
        seen.extend(u.user_id for u in reply.users)
        token = reply.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 7 and set(seen) == made


async def test_short_prefixes_page_through_every_match_shortest_handle_first(
    users, graph, infra, make_person
):
    """Typeahead reads handle lengths in order instead of scoring every match of a
    short prefix; pages must still hold exactly the full ranking: shortest handles
    first, followed accounts first within a length, then names."""
    w = word()[:8]
    suffixes = ["", "a", "b", "c", "aa", "ab", "ba", "bb", "abc", "bcd", "cde", "x" * 12]
    made = {
        sfx: await make_user(users, infra, f"{w}{sfx}", f"Someone {i}")
        for i, sfx in enumerate(suffixes)
    }
    named = await make_user(users, infra, f"n{w[1:]}x", f"{w} by name")
    viewer = await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=made["bb"].id), metadata=viewer.md)

    async def pages(size: int) -> list[int]:
        seen: list[int] = []
        token = ""
        while True:
            reply = await users.SearchUsers(
                user_pb2.SearchUsersRequest(query=w, page_size=size, page_token=token),
                metadata=viewer.md,
            )
            seen.extend(u.user_id for u in reply.users)
            token = reply.next_page_token
            if not token:
                return seen

    by_length: dict[int, list[int]] = {}
    for sfx, person in made.items():
        by_length.setdefault(len(sfx), []).append(person.id)
    expected = [made[""].id]
    for length in sorted(by_length)[1:]:
        ids = sorted(by_length[length], reverse=True)  # equal followers: newest id first
        if made["bb"].id in ids:
            ids.remove(made["bb"].id)
            ids.insert(0, made["bb"].id)  # followed first within its length
        expected += ids
    expected.append(named.id)

    async def ranked_as_expected() -> bool:  # once the follow reached user's search copy
        return await pages(50) == expected

    await eventually(ranked_as_expected)
    for size in (1, 2, 3, 5):
        assert await pages(size) == expected, size


# -- rate limit ----------------------------------------------------------------------


async def test_anonymous_search_is_rate_limited_per_client(posts, users, make_person):
    """The edge names the client in x-forwarded-for; direct local calls have none."""
    client = [("x-forwarded-for", f"198.51.100.{uuid.uuid4().int % 250 + 1}")]
    signed_in = await make_person()
    for _ in range(60):
        await posts.SearchPosts(post_pb2.SearchPostsRequest(query="anything"), metadata=client)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await posts.SearchPosts(post_pb2.SearchPostsRequest(query="anything"), metadata=client)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Tags share the post service's budget; people search has its own.
    with pytest.raises(grpc.aio.AioRpcError):
        await posts.SearchTags(post_pb2.SearchTagsRequest(query="anything"), metadata=client)
    await users.SearchUsers(user_pb2.SearchUsersRequest(query="anything"), metadata=client)
    # Signed in, the same address is not limited by the anonymous budget.
    await posts.SearchPosts(
        post_pb2.SearchPostsRequest(query="anything"), metadata=client + signed_in.md
    )
    # Another client is unaffected.
    await posts.SearchPosts(
        post_pb2.SearchPostsRequest(query="anything"),
        metadata=[("x-forwarded-for", "192.0.2.77")],
    )


async def test_projection_ignores_redelivered_and_reordered_events(mesh):
    """An older event arriving late never undoes a newer one; a redelivery changes nothing."""
    rt = mesh["post"].host.runtime
    search = SearchProjection(rt.db)
    a, b = rt.ids.next_id(), rt.ids.next_id()

    def meta(event_id: int) -> EventMeta:
        return EventMeta(event_id, "t", a, datetime.now(UTC), "graph")

    unfollowed = graph_events.Unfollowed(follower_id=a, followee_id=b)
    followed = graph_events.Followed(follower_id=a, followee_id=b)
    handlers = search.handlers()  # graph's typed events, routed as the consumer does
    await handlers.dispatch(seal(unfollowed, event_id=20, aggregate_id=a))
    await handlers.dispatch(seal(followed, event_id=10, aggregate_id=a))  # older, late
    await handlers.dispatch(seal(unfollowed, event_id=20, aggregate_id=a))  # redelivered
    following = await rt.db.primary.fetchval(
        "SELECT following FROM post.search_follows WHERE follower_id = $1 AND followee_id = $2",
        a,
        b,
    )
    assert following is False
    await search._on_user_deleted(user_events.UserDeleted(user_id=b), meta(5))
    await search._on_user_updated(user_events.UserUpdated(user_id=b, is_private=True), meta(30))
    row = await rt.db.primary.fetchrow(
        "SELECT is_private, deleted FROM post.search_authors WHERE user_id = $1", b
    )
    assert row["is_private"] and row["deleted"]  # deletion is final


async def test_follower_counts_move_only_when_a_follow_flips(mesh):
    rt = mesh["user"].host.runtime
    people = UserSearch(
        rt.db, rt.page_tokens, RateLimiter(rt.redis, "t", limit=1, window_seconds=1)
    )
    fan, idol = rt.ids.next_id(), rt.ids.next_id()
    followed = graph_events.Followed(follower_id=fan, followee_id=idol)
    unfollowed = graph_events.Unfollowed(follower_id=fan, followee_id=idol)
    handlers = people.handlers()
    await handlers.dispatch(seal(followed, event_id=10, aggregate_id=fan))
    await handlers.dispatch(seal(followed, event_id=10, aggregate_id=fan))  # redelivered
    await handlers.dispatch(seal(unfollowed, event_id=5, aggregate_id=fan))  # older, late

    async def count() -> int:
        return await rt.db.primary.fetchval(
            'SELECT follower_count FROM "user".search_follower_counts WHERE user_id = $1', idol
        )

    assert await count() == 1
    await handlers.dispatch(seal(unfollowed, event_id=30, aggregate_id=fan))
    assert await count() == 0
