"""PostgreSQL storage of the graph service (schema "graph"); plain parameterized SQL.

Every change that moves a count updates `graph.counts` in the same transaction,
touching count rows in ascending user-id order so concurrent follows between the
same two people can never deadlock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from google.protobuf.message import Message
from socialmesh.graph.v1 import events_pb2

from services.kit.db import Database
from services.kit.events import Outbox
from services.kit.ids import IdGenerator
from services.kit.timestamps import from_snowflake

SCHEMA = "graph"


class FollowOutcome(enum.Enum):
    FOLLOWING = "following"
    REQUESTED = "requested"


@dataclass(frozen=True)
class Relationship:
    following: bool = False
    followed_by: bool = False
    requested: bool = False
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False


@dataclass(frozen=True)
class Edge:
    user_id: int
    edge_id: int


@dataclass(frozen=True)
class ListedEdge:
    """An account on the owner's block or mute list, and when it was put there."""

    user_id: int
    created_at: datetime
    created_us: int

    @property
    def position(self) -> int:
        """Where the list continues after this entry: (time, id) packed in one int."""
        return (self.created_us << 64) | self.user_id


#: The lists an account keeps of others: kind -> (table, owner column, other column).
_OWN_LISTS = {
    "blocks": ("blocks", "blocker_id", "blocked_id"),
    "mutes": ("mutes", "muter_id", "muted_id"),
}


#: Kinds of exported edges, in export order (graph.proto RelationshipKind).
EXPORT_FOLLOW = 1
EXPORT_BLOCK = 2


@dataclass(frozen=True)
class ExportedEdge:
    """One edge of the export: `kind` EXPORT_FOLLOW or EXPORT_BLOCK, from -> to."""

    kind: int
    from_id: int
    to_id: int

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.kind, self.from_id, self.to_id)


class GraphStore:
    def __init__(self, db: Database, ids: IdGenerator) -> None:
        self._db = db
        self._ids = ids
        self._outbox = Outbox(SCHEMA, ids)

    async def _event(self, conn: asyncpg.Connection, event: Message, *, actor: int) -> None:
        """Every graph event's aggregate is the acting user (follower, blocker, muter)."""
        await self._outbox.enqueue(conn, event, aggregate_id=actor)

    async def _bump(
        self, conn: asyncpg.Connection, follower: int, followee: int, delta: int
    ) -> None:
        """Moves both counts of one follow edge, rows locked in id order."""
        for user_id in sorted((follower, followee)):
            following = delta if user_id == follower else 0
            followers = delta if user_id == followee else 0
            await conn.execute(
                """INSERT INTO graph.counts (user_id, follower_count, following_count)
                   VALUES ($1, GREATEST($2, 0), GREATEST($3, 0))
                   ON CONFLICT (user_id) DO UPDATE SET
                     follower_count = graph.counts.follower_count + $2,
                     following_count = graph.counts.following_count + $3""",
                user_id,
                followers,
                following,
            )

    async def _insert_follow(self, conn: asyncpg.Connection, follower: int, followee: int) -> bool:
        edge_id = self._ids.next_id()
        inserted = await conn.fetchval(
            """INSERT INTO graph.follows (follower_id, followee_id, edge_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            follower,
            followee,
            edge_id,
        )
        if inserted:
            await self._bump(conn, follower, followee, +1)
            followed = events_pb2.Followed(
                follower_id=follower,
                followee_id=followee,
                edge_id=edge_id,
                follow_time=from_snowflake(edge_id),
            )
            await self._event(conn, followed, actor=follower)
        return bool(inserted)

    async def _delete_follow(self, conn: asyncpg.Connection, follower: int, followee: int) -> bool:
        deleted = await conn.fetchval(
            """DELETE FROM graph.follows WHERE follower_id = $1 AND followee_id = $2
               RETURNING true""",
            follower,
            followee,
        )
        if deleted:
            await self._bump(conn, follower, followee, -1)
            await self._event(
                conn,
                events_pb2.Unfollowed(follower_id=follower, followee_id=followee),
                actor=follower,
            )
        return bool(deleted)

    async def is_blocked_either_way(self, a: int, b: int) -> tuple[bool, bool]:
        """(a blocks b, b blocks a)."""
        row = await self._db.primary.fetchrow(
            """SELECT EXISTS (SELECT 1 FROM graph.blocks WHERE blocker_id = $1 AND blocked_id = $2)
                        AS a_blocks,
                      EXISTS (SELECT 1 FROM graph.blocks WHERE blocker_id = $2 AND blocked_id = $1)
                        AS b_blocks""",
            a,
            b,
        )
        return bool(row["a_blocks"]), bool(row["b_blocks"])

    async def follow(self, follower: int, followee: int, *, needs_approval: bool) -> FollowOutcome:
        """Idempotent: repeating a follow (or a request) changes nothing."""
        async with self._db.transaction() as conn:
            exists = await conn.fetchval(
                """SELECT true FROM graph.follows WHERE follower_id = $1 AND followee_id = $2""",
                follower,
                followee,
            )
            if exists:
                return FollowOutcome.FOLLOWING
            if needs_approval:
                inserted = await conn.fetchval(
                    """INSERT INTO graph.follow_requests (requester_id, target_id, edge_id)
                       VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
                    follower,
                    followee,
                    self._ids.next_id(),
                )
                if inserted:
                    await self._event(
                        conn,
                        events_pb2.FollowRequested(requester_id=follower, target_id=followee),
                        actor=follower,
                    )
                return FollowOutcome.REQUESTED
            await self._insert_follow(conn, follower, followee)
            return FollowOutcome.FOLLOWING

    async def unfollow(self, follower: int, followee: int) -> None:
        """Removes a follow or cancels a pending request; idempotent."""
        async with self._db.transaction() as conn:
            await self._delete_follow(conn, follower, followee)
            await conn.execute(
                "DELETE FROM graph.follow_requests WHERE requester_id = $1 AND target_id = $2",
                follower,
                followee,
            )

    async def resolve_request(self, requester: int, target: int, *, accept: bool) -> bool:
        """Accepts or rejects a pending request; False if there was none."""
        async with self._db.transaction() as conn:
            pending = await conn.fetchval(
                """DELETE FROM graph.follow_requests WHERE requester_id = $1 AND target_id = $2
                   RETURNING true""",
                requester,
                target,
            )
            if not pending:
                return False
            if accept:
                await self._insert_follow(conn, requester, target)
                await self._event(
                    conn,
                    events_pb2.FollowRequestAccepted(requester_id=requester, target_id=target),
                    actor=target,
                )
            return True

    async def block(self, blocker: int, blocked: int) -> None:
        async with self._db.transaction() as conn:
            inserted = await conn.fetchval(
                """INSERT INTO graph.blocks (blocker_id, blocked_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                blocker,
                blocked,
            )
            if not inserted:
                return
            await self._delete_follow(conn, blocker, blocked)
            await self._delete_follow(conn, blocked, blocker)
            await conn.execute(
                """DELETE FROM graph.follow_requests
                   WHERE (requester_id = $1 AND target_id = $2)
                      OR (requester_id = $2 AND target_id = $1)""",
                blocker,
                blocked,
            )
            await self._event(
                conn,
                events_pb2.Blocked(blocker_id=blocker, blocked_id=blocked),
                actor=blocker,
            )

    async def unblock(self, blocker: int, blocked: int) -> None:
        async with self._db.transaction() as conn:
            removed = await conn.fetchval(
                """DELETE FROM graph.blocks WHERE blocker_id = $1 AND blocked_id = $2
                   RETURNING true""",
                blocker,
                blocked,
            )
            if removed:
                await self._event(
                    conn,
                    events_pb2.Unblocked(blocker_id=blocker, blocked_id=blocked),
                    actor=blocker,
                )

    async def mute(self, muter: int, muted: int) -> None:
        async with self._db.transaction() as conn:
            inserted = await conn.fetchval(
                """INSERT INTO graph.mutes (muter_id, muted_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                muter,
                muted,
            )
            if inserted:
                await self._event(
                    conn, events_pb2.Muted(muter_id=muter, muted_id=muted), actor=muter
                )

    async def unmute(self, muter: int, muted: int) -> None:
        async with self._db.transaction() as conn:
            removed = await conn.fetchval(
                """DELETE FROM graph.mutes WHERE muter_id = $1 AND muted_id = $2
                   RETURNING true""",
                muter,
                muted,
            )
            if removed:
                await self._event(
                    conn, events_pb2.Unmuted(muter_id=muter, muted_id=muted), actor=muter
                )

    async def relationships(self, viewer: int, targets: list[int]) -> dict[int, Relationship]:
        """The viewer's relationship to every target, in one round trip."""
        rows = await self._db.primary.fetch(
            """SELECT t.id AS target,
                 EXISTS (SELECT 1 FROM graph.follows f
                         WHERE f.follower_id = $1 AND f.followee_id = t.id) AS following,
                 EXISTS (SELECT 1 FROM graph.follows f
                         WHERE f.follower_id = t.id AND f.followee_id = $1) AS followed_by,
                 EXISTS (SELECT 1 FROM graph.follow_requests r
                         WHERE r.requester_id = $1 AND r.target_id = t.id) AS requested,
                 EXISTS (SELECT 1 FROM graph.blocks b
                         WHERE b.blocker_id = $1 AND b.blocked_id = t.id) AS blocking,
                 EXISTS (SELECT 1 FROM graph.blocks b
                         WHERE b.blocker_id = t.id AND b.blocked_id = $1) AS blocked_by,
                 EXISTS (SELECT 1 FROM graph.mutes m
                         WHERE m.muter_id = $1 AND m.muted_id = t.id) AS muting
               FROM unnest($2::bigint[]) AS t(id)""",
            viewer,
            targets,
        )
        return {
            r["target"]: Relationship(
                following=r["following"],
                followed_by=r["followed_by"],
                requested=r["requested"],
                blocking=r["blocking"],
                blocked_by=r["blocked_by"],
                muting=r["muting"],
            )
            for r in rows
        }

    async def counts(self, user_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(followers, following) per user; users with no row have (0, 0)."""
        ids = list(user_ids)
        rows = await self._db.reader().fetch(
            """SELECT user_id, follower_count, following_count FROM graph.counts
               WHERE user_id = ANY($1::bigint[])""",
            ids,
        )
        found = {r["user_id"]: (r["follower_count"], r["following_count"]) for r in rows}
        return {u: found.get(u, (0, 0)) for u in ids}

    async def listed(
        self, kind: str, owner_id: int, before: int | None, limit: int
    ) -> list[ListedEdge]:
        """The owner's blocks or mutes (`kind`), newest first, continuing before `before`
        (a `ListedEdge.position`)."""
        table, owner, other = _OWN_LISTS[kind]
        before_us, before_id = (None, None) if before is None else divmod(before, 1 << 64)
        rows = await self._db.reader().fetch(
            f"""SELECT {other} AS user_id, created_at,
                       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us
                FROM graph.{table}
                WHERE {owner} = $1 AND ($2::bigint IS NULL
                    OR ((extract(epoch FROM created_at) * 1000000)::bigint, {other})
                        < ($2::bigint, $3::bigint))
                ORDER BY created_at DESC, {other} DESC LIMIT $4""",
            owner_id,
            before_us,
            before_id,
            limit,
        )
        return [ListedEdge(r["user_id"], r["created_at"], r["created_us"]) for r in rows]

    async def followers(self, user_id: int, before_edge: int | None, limit: int) -> list[Edge]:
        rows = await self._db.reader().fetch(
            """SELECT follower_id AS user_id, edge_id FROM graph.follows
               WHERE followee_id = $1 AND ($2::bigint IS NULL OR edge_id < $2)
               ORDER BY edge_id DESC LIMIT $3""",
            user_id,
            before_edge,
            limit,
        )
        return [Edge(r["user_id"], r["edge_id"]) for r in rows]

    async def suggestions(
        self, viewer_id: int, limit: int, candidate_ids: Sequence[int] = ()
    ) -> list[tuple[int, int, int, bool]]:
        """(user_id, mutual_count, follower_count, from_candidates), best first; see
        ListSuggestedAccounts.

        Bounded whatever the graph: the viewer's 500 newest follows, 200 newest follows
        of each, the caller's candidates (at most 200, in their order), then the
        most-followed accounts to top up.
        """
        rows = await self._db.reader().fetch(
            """WITH mine AS (
                   SELECT followee_id FROM graph.follows WHERE follower_id = $1
                   ORDER BY edge_id DESC LIMIT 500),
               fof AS (
                   SELECT f.followee_id AS user_id, count(*) AS mutual
                   FROM mine m CROSS JOIN LATERAL (
                       SELECT followee_id FROM graph.follows WHERE follower_id = m.followee_id
                       ORDER BY edge_id DESC LIMIT 200) f
                   GROUP BY f.followee_id),
               popular AS (
                   SELECT user_id, 0::bigint AS mutual, NULL::bigint AS rank FROM graph.counts
                   ORDER BY follower_count DESC LIMIT $2 * 4),
               given AS (
                   SELECT user_id, 0::bigint AS mutual, rank
                   FROM unnest($3::bigint[]) WITH ORDINALITY AS g(user_id, rank)),
               candidates AS (
                   SELECT user_id, max(mutual) AS mutual, min(rank) AS rank
                   FROM (SELECT user_id, mutual, NULL::bigint AS rank FROM fof
                         UNION ALL SELECT * FROM given
                         UNION ALL SELECT * FROM popular) c
                   GROUP BY user_id)
               SELECT c.user_id, c.mutual, coalesce(k.follower_count, 0) AS followers,
                      c.rank IS NOT NULL AS given
               FROM candidates c LEFT JOIN graph.counts k USING (user_id)
               WHERE c.user_id <> $1
                 AND NOT EXISTS (SELECT 1 FROM graph.follows
                                 WHERE follower_id = $1 AND followee_id = c.user_id)
                 AND NOT EXISTS (SELECT 1 FROM graph.follow_requests
                                 WHERE requester_id = $1 AND target_id = c.user_id)
                 AND NOT EXISTS (SELECT 1 FROM graph.blocks
                                 WHERE (blocker_id = $1 AND blocked_id = c.user_id)
                                    OR (blocker_id = c.user_id AND blocked_id = $1))
                 AND NOT EXISTS (SELECT 1 FROM graph.mutes
                                 WHERE muter_id = $1 AND muted_id = c.user_id)
               ORDER BY c.mutual DESC, c.rank NULLS LAST, followers DESC, c.user_id
               LIMIT $2""",
            viewer_id,
            limit,
            list(candidate_ids),
        )
        return [
            (r["user_id"], int(r["mutual"]), int(r["followers"]), bool(r["given"])) for r in rows
        ]

    async def following(self, user_id: int, before_edge: int | None, limit: int) -> list[Edge]:
        rows = await self._db.reader().fetch(
            """SELECT followee_id AS user_id, edge_id FROM graph.follows
               WHERE follower_id = $1 AND ($2::bigint IS NULL OR edge_id < $2)
               ORDER BY edge_id DESC LIMIT $3""",
            user_id,
            before_edge,
            limit,
        )
        return [Edge(r["user_id"], r["edge_id"]) for r in rows]

    async def pending_requests(
        self, target: int, before_edge: int | None, limit: int
    ) -> list[Edge]:
        rows = await self._db.primary.fetch(
            """SELECT requester_id AS user_id, edge_id FROM graph.follow_requests
               WHERE target_id = $1 AND ($2::bigint IS NULL OR edge_id < $2)
               ORDER BY edge_id DESC LIMIT $3""",
            target,
            before_edge,
            limit,
        )
        return [Edge(r["user_id"], r["edge_id"]) for r in rows]

    async def export_edges(
        self, after: tuple[int, int, int] | None, limit: int
    ) -> list[ExportedEdge]:
        """Up to `limit` edges after `after` in (kind, from, to) order: follows, then blocks.

        Keyset reads over the primary keys (a replica could lag behind the events
        the reader's copy has already seen).
        """
        kind, a, b = after if after is not None else (EXPORT_FOLLOW, 0, 0)
        edges: list[ExportedEdge] = []
        if kind == EXPORT_FOLLOW:
            rows = await self._db.primary.fetch(
                """SELECT follower_id, followee_id FROM graph.follows
                   WHERE (follower_id, followee_id) > ($1, $2)
                   ORDER BY follower_id, followee_id LIMIT $3""",
                a,
                b,
                limit,
            )
            edges += [ExportedEdge(EXPORT_FOLLOW, r[0], r[1]) for r in rows]
            a, b = 0, 0  # blocks start from the beginning
        if len(edges) < limit:
            rows = await self._db.primary.fetch(
                """SELECT blocker_id, blocked_id FROM graph.blocks
                   WHERE (blocker_id, blocked_id) > ($1, $2)
                   ORDER BY blocker_id, blocked_id LIMIT $3""",
                a,
                b,
                limit - len(edges),
            )
            edges += [ExportedEdge(EXPORT_BLOCK, r[0], r[1]) for r in rows]
        return edges

    async def forget_user(self, user_id: int) -> list[int]:
        """Drops a deleted account's edges, fixing everyone's counts in set-based SQL.

        Idempotent (re-delivered `user.deleted` events find nothing left to do).
        Returns the accounts whose counts changed.
        """
        async with self._db.transaction() as conn:
            followers = await conn.fetch(
                """WITH gone AS (
                       DELETE FROM graph.follows WHERE followee_id = $1 RETURNING follower_id)
                   UPDATE graph.counts c SET following_count = c.following_count - 1
                   FROM gone WHERE c.user_id = gone.follower_id RETURNING c.user_id""",
                user_id,
            )
            followees = await conn.fetch(
                """WITH gone AS (
                       DELETE FROM graph.follows WHERE follower_id = $1 RETURNING followee_id)
                   UPDATE graph.counts c SET follower_count = c.follower_count - 1
                   FROM gone WHERE c.user_id = gone.followee_id RETURNING c.user_id""",
                user_id,
            )
            await conn.execute(
                """DELETE FROM graph.follow_requests WHERE requester_id = $1 OR target_id = $1""",
                user_id,
            )
            await conn.execute(
                "DELETE FROM graph.mutes WHERE muter_id = $1 OR muted_id = $1", user_id
            )
            await conn.execute(
                "DELETE FROM graph.blocks WHERE blocker_id = $1 OR blocked_id = $1", user_id
            )
            await conn.execute("DELETE FROM graph.counts WHERE user_id = $1", user_id)
        return [user_id, *(r["user_id"] for r in (*followers, *followees))]
