"""The search copies' back-fill from graph's and user's exports (docs/search.md, "Back-fill").

Real services, real gRPC with real service credentials, real PostgreSQL/Redis.
History that "never went through events" is made the way `socialmesh seed`
makes it: rows written straight into graph's and user's own tables, no event.
The back-fill is run the way `socialmesh search backfill` runs it
(`services.search_backfill.backfill_copy`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.backfill import (
    BackfillResult,
    BackfillWorker,
    backfill_relationships,
    is_backfilled,
    request_backfill,
    run_backfill,
    snapshot_event_id,
)
from services.kit.channels import open_channel
from services.kit.ids import timestamp_ms
from services.kit.relationships import set_block, set_follow
from services.post.search import backfill as post_backfill
from services.search_backfill import backfill_copy

from .conftest import Infra, Mesh, Person
from .helpers import eventually, publish, search_ids, violations, word
from .search_support import sql_ids

FOLLOW = graph_pb2.RELATIONSHIP_KIND_FOLLOW
BLOCK = graph_pb2.RELATIONSHIP_KIND_BLOCK


@pytest.fixture
async def settled(mesh: Mesh) -> Mesh:
    """The mesh once its services' own start-up back-fills are done (so that the
    history each test makes is unknown to the copies until the test back-fills)."""
    for service in ("post", "user"):
        db = mesh[service].host.runtime.db

        async def done(db=db, service=service) -> bool:
            return await is_backfilled(db, service)

        await eventually(done, within=60)
    return mesh


@dataclass
class Peers:
    """graph and user as the post service calls them (its own credential)."""

    graph: graph_pb2_grpc.GraphServiceStub
    users: user_pb2_grpc.UserServiceStub


@pytest.fixture
async def as_post(mesh: Mesh, infra: Infra) -> AsyncIterator[Peers]:
    token = infra.service_credentials("post").token
    channels = [open_channel(mesh[n].address, service_token=token) for n in ("graph", "user")]
    yield Peers(
        graph_pb2_grpc.GraphServiceStub(channels[0]), user_pb2_grpc.UserServiceStub(channels[1])
    )
    for channel in channels:
        await channel.close(grace=None)


async def backfill(mesh: Mesh, infra: Infra, service: str) -> BackfillResult:
    """What `socialmesh search backfill --service <service>` does, against the mesh."""
    return await backfill_copy(
        mesh[service].host.runtime.db,
        service,
        infra.settings(service, mesh.env),
        infra.service_credentials(service),
    )


async def graph_sql(mesh: Mesh, sql: str, *args: object) -> None:
    """Writes graph's own tables directly: history that raised no event."""
    await mesh["graph"].host.runtime.db.primary.execute(sql, *args)


async def old_follow(mesh: Mesh, follower: Person, followee: Person) -> None:
    await graph_sql(
        mesh,
        "INSERT INTO graph.follows (follower_id, followee_id, edge_id) VALUES ($1, $2, $3)",
        follower.id,
        followee.id,
        mesh["graph"].host.runtime.ids.next_id(),
    )


async def old_block(mesh: Mesh, blocker: Person, blocked: Person) -> None:
    await graph_sql(
        mesh,
        "INSERT INTO graph.blocks (blocker_id, blocked_id) VALUES ($1, $2)",
        blocker.id,
        blocked.id,
    )


async def value(mesh: Mesh, service: str, sql: str, *args: object) -> object:
    return await mesh[service].host.runtime.db.primary.fetchval(sql, *args)


async def people_found(users, query: str, viewer: Person) -> list[int]:
    reply = await users.SearchUsers(user_pb2.SearchUsersRequest(query=query), metadata=viewer.md)
    return [u.user_id for u in reply.users]


# -- what the back-fill fixes -----------------------------------------------------------


async def test_an_old_block_by_the_viewer_is_honoured_only_after_the_backfill(
    posts, users, graph, make_person, settled, infra
):
    author, viewer = await make_person(), await make_person()
    secret = word()
    post = await publish(posts, author, f"blocked long ago {secret}")
    await old_block(settled, viewer, author)

    # The gap: neither copy knows the block, and the post service's re-check of
    # the page (BatchGetUsers) does not hide an author the *viewer* blocks.
    assert await search_ids(posts, secret, viewer) == [post.post_id]
    assert await sql_ids(settled, secret, viewer) == [post.post_id]
    assert author.id in await people_found(users, author.handle, viewer)

    result = await backfill(settled, infra, "post")
    assert result.blocks >= 1 and result.follows >= 0
    await backfill(settled, infra, "user")

    assert await search_ids(posts, secret, viewer) == []
    assert await sql_ids(settled, secret, viewer) == []
    assert await search_ids(posts, secret) == [post.post_id]  # others still find it
    assert author.id not in await people_found(users, author.handle, viewer)

    # A newer event (an unblock after the snapshot) wins over the back-filled row.
    await graph.UnblockUser(graph_pb2.UnblockUserRequest(user_id=author.id), metadata=viewer.md)

    async def found_again() -> bool:
        return await sql_ids(settled, secret, viewer) == [post.post_id]

    await eventually(found_again)
    assert await search_ids(posts, secret, viewer) == [post.post_id]


async def test_an_old_follow_makes_followers_only_posts_findable_after_the_backfill(
    posts, users, make_person, settled, infra
):
    author, fan = await make_person(), await make_person()
    secret = word()
    post = await publish(
        posts, author, f"members only {secret}", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    await old_follow(settled, fan, author)
    counted = """SELECT coalesce((SELECT follower_count FROM "user".search_follower_counts
                                  WHERE user_id = $1), 0)"""
    before = await value(settled, "user", counted, author.id)

    assert await search_ids(posts, secret, fan) == []  # fail-closed: unknown follow
    assert await sql_ids(settled, secret, fan) == []

    await backfill(settled, infra, "post")
    await backfill(settled, infra, "user")

    assert await search_ids(posts, secret, fan) == [post.post_id]
    assert await sql_ids(settled, secret, fan) == [post.post_id]
    # People search ranks by its follower counts: the back-filled follow counts once,
    assert await value(settled, "user", counted, author.id) == before + 1  # type: ignore[operator]
    following = """SELECT following FROM "user".search_follows
                   WHERE follower_id = $1 AND followee_id = $2"""
    assert await value(settled, "user", following, fan.id, author.id) is True
    # ... and a second back-fill changes nothing.
    await backfill(settled, infra, "user")
    assert await value(settled, "user", counted, author.id) == before + 1  # type: ignore[operator]


async def test_account_states_are_backfilled(posts, users, make_person, settled, infra):
    """A private account whose switch raised no event, and a copy that still says
    private for an account that is public again (its event lost)."""
    hidden, shown, viewer = await make_person(), await make_person(), await make_person()
    secret = word()
    hidden_post = await publish(posts, hidden, f"now private {secret}")
    shown_post = await publish(posts, shown, f"public again {secret}")
    await settled["user"].host.runtime.db.primary.execute(
        'UPDATE "user".users SET is_private = true WHERE user_id = $1', hidden.id
    )
    await settled["post"].host.runtime.db.primary.execute(
        """INSERT INTO post.search_authors (user_id, is_private, event_id) VALUES ($1, true, $2)""",
        shown.id,
        snapshot_event_id() - (1 << 30),  # an old event
    )
    assert await sql_ids(settled, secret, viewer) == [hidden_post.post_id]

    result = await backfill(settled, infra, "post")
    assert result.accounts >= 3

    assert await sql_ids(settled, secret, viewer) == [shown_post.post_id]
    assert await search_ids(posts, secret, viewer) == [shown_post.post_id]


async def test_newer_events_win_and_stale_rows_are_turned_off(make_person, settled, as_post):
    """The ordering rule, on the kit's writer with a chosen snapshot id."""
    a, b, c, d = [await make_person() for _ in range(4)]
    db = settled["post"].host.runtime.db
    snapshot = snapshot_event_id()
    newer, older = snapshot + (1 << 22), snapshot - (1 << 22)  # 1 ms either side
    await old_follow(settled, a, b)  # graph: a follows b, b follows c
    await old_follow(settled, b, c)
    # The copy: a newer event already unfollowed a -> b (it wins over the export);
    # an older event says c follows d and c blocks a (graph has neither any more).
    await set_follow(db.primary, "post", a.id, b.id, False, newer)
    await set_follow(db.primary, "post", c.id, d.id, True, older)
    await set_block(db.primary, "post", c.id, a.id, True, older)

    result = BackfillResult(snapshot)
    await backfill_relationships(db, "post", as_post.graph, snapshot, result)

    async def edge(table: str, column: str, x: Person, y: Person) -> tuple[bool, int]:
        cols = (
            ("follower_id", "followee_id") if table == "follows" else ("blocker_id", "blocked_id")
        )
        row = await db.primary.fetchrow(
            f"SELECT {column}, event_id FROM post.search_{table} "
            f"WHERE {cols[0]} = $1 AND {cols[1]} = $2",
            x.id,
            y.id,
        )
        return bool(row[0]), int(row[1])

    assert await edge("follows", "following", a, b) == (False, newer)  # the newer event won
    assert await edge("follows", "following", b, c) == (True, snapshot)  # back-filled
    assert await edge("follows", "following", c, d) == (False, snapshot)  # stale: off
    assert await edge("blocks", "blocking", c, a) == (False, snapshot)  # stale: off
    assert result.retired >= 2
    # An event older than the snapshot, delivered late, changes nothing.
    await set_follow(db.primary, "post", b.id, c.id, False, older)
    assert await edge("follows", "following", b, c) == (True, snapshot)


def test_the_snapshot_id_is_the_first_snowflake_of_a_minute_before():
    now_ms = 1_800_000_000_123
    snapshot = snapshot_event_id(now_ms)
    assert timestamp_ms(snapshot) == now_ms - 60_000
    assert timestamp_ms(snapshot - 1) == now_ms - 60_001  # every id of that ms is >= it


# -- when it runs -------------------------------------------------------------------------


async def test_one_replica_backfills_at_a_time_and_marks_the_copy(settled):
    db = settled["post"].host.runtime.db
    started: list[int] = []

    async def slow_fill(event_id: int, result: BackfillResult) -> None:
        started.append(event_id)
        await asyncio.sleep(0.5)

    await request_backfill(db.primary, "post")
    assert not await is_backfilled(db, "post")
    first, second = await asyncio.gather(
        run_backfill(db, "post", slow_fill, wait=False),
        run_backfill(db, "post", slow_fill, wait=False),
    )
    assert len(started) == 1 and [first is None, second is None].count(True) == 1
    assert await is_backfilled(db, "post")
    # Marked: a replica starting now has nothing to do; the CLI (wait=True) always runs.
    assert await run_backfill(db, "post", slow_fill, wait=False) is None
    assert await run_backfill(db, "post", slow_fill, wait=True) is not None
    assert len(started) == 2


async def test_a_service_backfills_in_the_background_when_asked_to(make_person, settled, as_post):
    """What `socialmesh seed` leaves behind: an emptied marker table. The worker a
    service runs back-fills then (here one with a short re-check period)."""
    rt = settled["post"].host.runtime
    fan, author = await make_person(), await make_person()
    await old_follow(settled, fan, author)

    async def fill(event_id: int, result: BackfillResult) -> None:
        await post_backfill(rt.db, as_post.graph, as_post.users, event_id, result)

    await request_backfill(rt.db.primary, "post")
    worker = BackfillWorker(rt.db, "post", fill, recheck_seconds=0.2)
    worker.start()
    try:
        await asyncio.wait_for(worker.done.wait(), timeout=60)
    finally:
        await worker.stop()
    following = """SELECT following FROM post.search_follows
                   WHERE follower_id = $1 AND followee_id = $2"""
    assert await value(settled, "post", following, fan.id, author.id) is True


# -- the exports --------------------------------------------------------------------------


async def test_export_relationships_pages_cover_every_edge_exactly_once(
    graph, make_person, settled, infra
):
    a, b, c = await make_person(), await make_person(), await make_person()
    await old_follow(settled, a, b)
    await old_block(settled, c, a)
    rows = await settled["graph"].host.runtime.db.primary.fetch(
        """SELECT 1 AS kind, follower_id AS a, followee_id AS b FROM graph.follows
           UNION ALL SELECT 2, blocker_id, blocked_id FROM graph.blocks"""
    )
    expected = sorted((r["kind"], r["a"], r["b"]) for r in rows)
    service = infra.service_auth("post")
    size = max(1, len(expected) // 4)  # several pages, one across follows -> blocks
    seen: list[tuple[int, int, int]] = []
    token, pages = "", 0
    while True:
        reply = await graph.ExportRelationships(
            graph_pb2.ExportRelationshipsRequest(page_size=size, page_token=token),
            metadata=service,
        )
        assert len(reply.edges) <= size
        seen += [(e.kind, e.from_user_id, e.to_user_id) for e in reply.edges]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert pages == -(-len(expected) // size) >= 4
    assert seen == expected  # in (kind, from, to) order, each edge once
    assert (FOLLOW, a.id, b.id) in seen and (BLOCK, c.id, a.id) in seen


async def test_export_account_states_pages_cover_every_account_exactly_once(
    users, make_person, settled, infra
):
    private = await make_person(private=True)
    gone = await make_person()
    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=gone.id), metadata=gone.md)
    rows = await settled["user"].host.runtime.db.primary.fetch(
        'SELECT user_id, is_private, deleted_at IS NOT NULL AS deleted FROM "user".users'
    )
    expected = sorted((r["user_id"], r["is_private"], r["deleted"]) for r in rows)
    service = infra.service_auth("post")
    size = max(2, len(expected) // 4)
    seen: list[tuple[int, bool, bool]] = []
    token = ""
    while True:
        reply = await users.ExportAccountStates(
            user_pb2.ExportAccountStatesRequest(page_size=size, page_token=token),
            metadata=service,
        )
        seen += [(s.user_id, s.is_private, s.deleted) for s in reply.accounts]
        token = reply.next_page_token
        if not token:
            break
    assert seen == expected
    assert (private.id, True, False) in seen and (gone.id, False, True) in seen


async def test_exports_are_for_services_only_and_validate_their_input(
    graph, users, make_person, infra
):
    person = await make_person()
    calls = {
        "graph": lambda req, md: graph.ExportRelationships(
            graph_pb2.ExportRelationshipsRequest(**req), metadata=md
        ),
        "user": lambda req, md: users.ExportAccountStates(
            user_pb2.ExportAccountStatesRequest(**req), metadata=md
        ),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call({}, person.md)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call({}, None)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        service = infra.service_auth("feed")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call({"page_size": -1}, service)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert "pageSize" in violations(err.value), name
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call({"page_token": "forged.token"}, service)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert "pageToken" in violations(err.value), name
        await call({"page_size": 1}, service)  # a service may


async def test_private_switch_through_the_api_still_counts_after_a_backfill(
    users, make_person, settled, infra
):
    """Events and back-fill agree: an account made private through UpdateUser stays
    private in the copy whether its event or the back-fill comes first."""
    person = await make_person()
    await users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(user_id=person.id, is_private=True),
            update_mask=field_mask_pb2.FieldMask(paths=["is_private"]),
        ),
        metadata=person.md,
    )
    await backfill(settled, infra, "post")
    private = "SELECT is_private FROM post.search_authors WHERE user_id = $1"

    async def projected() -> bool:
        return await value(settled, "post", private, person.id) is True

    await eventually(projected)
