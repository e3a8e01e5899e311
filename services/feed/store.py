"""PostgreSQL storage of the feed service (schema "feed").

Timelines live in Redis (`timelines.py`); this holds what must be durable: what
clients displayed (impressions), what users asked to see less (or more) of
(feedback), the interaction log and post facts the ranker learns from and reads
at serve time (`interactions`, `posts`, fed by post events), and experiment
exposure (`exposures`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.kit.consumers import EventMeta, claim_event
from services.kit.db import Database

SCHEMA = "feed"

NOT_INTERESTED = 1
SHOW_LESS_FROM_AUTHOR = 2
SHOW_MORE = 3

#: Interaction kinds (feed.interactions.kind).
LIKE, UNLIKE, SHARE, UNSHARE, COMMENT = 1, 2, 3, 4, 5
#: Kinds that count as engaging with a post.
ENGAGED = (LIKE, SHARE, COMMENT)
#: post.v1.Visibility.VISIBILITY_PUBLIC (feed.posts.visibility).
PUBLIC = 1
#: Consumer group of the interaction log (claim_event rows in feed.consumed_events).
LOG_GROUP = "feed-log"
#: Each per-request candidate source reads at most this many posts.
SOURCE_CAP = 100
#: A viewer's recent engagements that define their peers and tag profile.
PROFILE_DEPTH = 100

# $1..$4: viewer, post, author, as-of arrays; $5: ENGAGED; $6: PROFILE_DEPTH.
FACTS_SQL = """
WITH q AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[])
        WITH ORDINALITY AS q(viewer_id, post_id, author_id, at, i)),
profiles AS (SELECT DISTINCT viewer_id, at FROM q),
mine AS MATERIALIZED (
    SELECT pr.viewer_id, pr.at, m.post_id FROM profiles pr CROSS JOIN LATERAL (
        SELECT x.post_id FROM feed.interactions x
        WHERE x.viewer_id = pr.viewer_id AND x.kind = ANY($5::smallint[])
          AND x.occurred_at < pr.at
        ORDER BY x.occurred_at DESC LIMIT $6) m),
profile_tags AS MATERIALIZED (
    SELECT DISTINCT mine.viewer_id, mine.at, tag
    FROM mine JOIN feed.posts p USING (post_id), unnest(p.hashtags) AS tag),
peers AS MATERIALIZED (
    SELECT DISTINCT mine.viewer_id, mine.at, y.viewer_id AS peer
    FROM mine CROSS JOIN LATERAL (
        SELECT x.viewer_id FROM feed.interactions x
        WHERE x.post_id = mine.post_id AND x.kind = ANY($5::smallint[])
          AND x.occurred_at < mine.at AND x.viewer_id <> mine.viewer_id
        ORDER BY x.occurred_at DESC LIMIT 200) y),
candidate_tags AS MATERIALIZED (
    SELECT q.i, q.viewer_id, q.at, h.tag
    FROM q JOIN feed.posts p ON p.post_id = q.post_id
    CROSS JOIN LATERAL unnest(p.hashtags) AS h(tag)),
tag_hits AS (
    SELECT c.i, count(DISTINCT c.tag) AS n
    FROM candidate_tags c
    JOIN profile_tags t ON t.tag = c.tag AND t.viewer_id = c.viewer_id AND t.at = c.at
    GROUP BY c.i),
engagers AS MATERIALIZED (
    SELECT q.i, q.viewer_id, q.at, x.viewer_id AS engager
    FROM q CROSS JOIN LATERAL (
        SELECT e.viewer_id FROM feed.interactions e
        WHERE e.post_id = q.post_id AND e.kind = ANY($5::smallint[]) AND e.occurred_at < q.at
        ORDER BY e.occurred_at DESC LIMIT 1000) x),
peer_engaged AS (
    SELECT g.i, count(DISTINCT g.engager) AS n
    FROM engagers g
    JOIN peers ON peers.peer = g.engager AND peers.viewer_id = g.viewer_id AND peers.at = g.at
    GROUP BY g.i)
SELECT q.i, e.likes, e.shares, e.comments, a.n AS viewer_author,
       coalesce(th.n, 0) AS tag_hits, coalesce(pe.n, 0) AS peer_engaged
FROM q
LEFT JOIN tag_hits th ON th.i = q.i
LEFT JOIN peer_engaged pe ON pe.i = q.i
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.kind = 1) - count(*) FILTER (WHERE x.kind = 2) AS likes,
           count(*) FILTER (WHERE x.kind = 3) - count(*) FILTER (WHERE x.kind = 4) AS shares,
           count(*) FILTER (WHERE x.kind = 5) AS comments
    FROM feed.interactions x WHERE x.post_id = q.post_id AND x.occurred_at < q.at) e
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM feed.interactions x
    WHERE x.viewer_id = q.viewer_id AND x.author_id = q.author_id
      AND x.kind = ANY($5::smallint[]) AND x.occurred_at < q.at) a
ORDER BY q.i
"""


@dataclass(frozen=True)
class ImpressionRow:
    impression_id: str
    post_id: int
    surface: int
    position: int
    served_kind: int
    served_rank: int
    score: float
    arm: str
    dwell_ms: int
    display_time: datetime | None
    source: str = ""


@dataclass
class Feedback:
    """A viewer's feedback, as the next page applies it."""

    hidden_posts: set[int] = field(default_factory=set)
    less_authors: set[int] = field(default_factory=set)
    more_authors: set[int] = field(default_factory=set)

    def any(self) -> bool:
        return bool(self.hidden_posts or self.less_authors or self.more_authors)


class FeedStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_impressions(self, viewer_id: int, rows: list[ImpressionRow]) -> int:
        """Inserts the impressions not recorded before; returns how many were new."""
        if not rows:
            return 0
        inserted = await self._db.primary.fetch(
            """INSERT INTO feed.impressions (viewer_id, impression_id, post_id, surface, position,
                   served_kind, served_rank, score, arm, dwell_ms, display_time, source)
               SELECT $1, i.* FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::int[],
                   $6::smallint[], $7::int[], $8::float8[], $9::text[], $10::bigint[],
                   $11::timestamptz[], $12::text[])
                 AS i(impression_id, post_id, surface, position, served_kind, served_rank,
                      score, arm, dwell_ms, display_time, source)
               ON CONFLICT DO NOTHING RETURNING impression_id""",
            viewer_id,
            [r.impression_id for r in rows],
            [r.post_id for r in rows],
            [r.surface for r in rows],
            [r.position for r in rows],
            [r.served_kind for r in rows],
            [r.served_rank for r in rows],
            [r.score for r in rows],
            [r.arm for r in rows],
            [r.dwell_ms for r in rows],
            [r.display_time for r in rows],
            [r.source for r in rows],
        )
        return len(inserted)

    async def add_feedback(self, viewer_id: int, post_id: int, author_id: int, kind: int) -> bool:
        inserted = await self._db.primary.fetchval(
            """INSERT INTO feed.feedback (viewer_id, post_id, author_id, kind)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            viewer_id,
            post_id,
            author_id,
            kind,
        )
        return bool(inserted)

    async def feedback(self, viewer_id: int) -> Feedback:
        """The viewer's feedback (primary: it must count from the very next page)."""
        rows = await self._db.primary.fetch(
            "SELECT post_id, author_id, kind FROM feed.feedback WHERE viewer_id = $1", viewer_id
        )
        out = Feedback()
        for row in rows:
            if row["kind"] == NOT_INTERESTED:
                out.hidden_posts.add(row["post_id"])
            elif row["kind"] == SHOW_LESS_FROM_AUTHOR:
                out.less_authors.add(row["author_id"])
            elif row["kind"] == SHOW_MORE:
                out.more_authors.add(row["author_id"])
        out.more_authors -= out.less_authors
        return out

    # -- the interaction log (consumer group `feed-log`) -----------------------------

    async def log_interaction(
        self, meta: EventMeta, viewer_id: int, post_id: int, author_id: int, kind: int
    ) -> bool:
        """Appends one interaction, once per event (claim_event in the same transaction)."""
        async with self._db.transaction() as conn:
            if not await claim_event(conn, SCHEMA, LOG_GROUP, meta):
                return False
            await conn.execute(
                """INSERT INTO feed.interactions
                       (event_id, viewer_id, post_id, author_id, kind, occurred_at)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                meta.event_id,
                viewer_id,
                post_id,
                author_id,
                kind,
                meta.occur_time,
            )
        return True

    async def log_post(
        self,
        meta: EventMeta,
        post_id: int,
        author_id: int,
        visibility: int,
        hashtags: Sequence[str],
        created_at: datetime,
    ) -> None:
        """PostCreated's facts (order-insensitive with PostDeleted: `deleted` is kept)."""
        async with self._db.transaction() as conn:
            if not await claim_event(conn, SCHEMA, LOG_GROUP, meta):
                return
            await conn.execute(
                """INSERT INTO feed.posts (post_id, author_id, visibility, hashtags, created_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (post_id) DO UPDATE SET author_id = excluded.author_id,
                       visibility = excluded.visibility, hashtags = excluded.hashtags,
                       created_at = excluded.created_at""",
                post_id,
                author_id,
                visibility,
                list(hashtags),
                created_at,
            )

    async def log_post_deleted(self, meta: EventMeta, post_id: int, author_id: int) -> None:
        async with self._db.transaction() as conn:
            if not await claim_event(conn, SCHEMA, LOG_GROUP, meta):
                return
            # Visibility 0 until (unless) a late PostCreated fills it in: never a candidate.
            await conn.execute(
                """INSERT INTO feed.posts (post_id, author_id, visibility, created_at, deleted)
                   VALUES ($1, $2, 0, $3, true)
                   ON CONFLICT (post_id) DO UPDATE SET deleted = true""",
                post_id,
                author_id,
                meta.occur_time,
            )

    # -- out-of-network candidates (each source capped, one query each) --------------

    async def co_engaged(self, viewer_id: int, limit: int = SOURCE_CAP) -> list[tuple[int, int]]:
        """(post, author) of PUBLIC posts engaged with by the viewer's peers: users who
        engaged with at least one of the viewer's recently engaged posts; strongest first."""
        rows = await self._db.reader().fetch(
            """WITH mine AS (
                   SELECT post_id FROM feed.interactions
                   WHERE viewer_id = $1 AND kind = ANY($2::smallint[])
                   ORDER BY occurred_at DESC LIMIT $3),
               peers AS (
                   SELECT y.viewer_id, count(DISTINCT y.post_id) AS overlap
                   FROM mine CROSS JOIN LATERAL (
                       SELECT viewer_id, post_id FROM feed.interactions x
                       WHERE x.post_id = mine.post_id AND x.kind = ANY($2::smallint[])
                         AND x.viewer_id <> $1
                       ORDER BY occurred_at DESC LIMIT 200) y
                   GROUP BY y.viewer_id ORDER BY overlap DESC LIMIT 50)
               SELECT i.post_id, p.author_id
               FROM peers JOIN LATERAL (
                   SELECT post_id FROM feed.interactions x
                   WHERE x.viewer_id = peers.viewer_id AND x.kind = ANY($2::smallint[])
                   ORDER BY occurred_at DESC LIMIT $3) i ON true
               JOIN feed.posts p ON p.post_id = i.post_id
               WHERE p.visibility = $4 AND NOT p.deleted AND p.author_id <> $1
                 AND i.post_id NOT IN (SELECT post_id FROM mine)
               GROUP BY i.post_id, p.author_id
               ORDER BY sum(peers.overlap) DESC, i.post_id DESC LIMIT $5""",
            viewer_id,
            list(ENGAGED),
            PROFILE_DEPTH,
            PUBLIC,
            limit,
        )
        return [(r["post_id"], r["author_id"]) for r in rows]

    async def co_engaged_accounts(self, viewer_id: int, limit: int) -> list[int]:
        """Who-to-follow candidates from shared interests, strongest first: people who
        engaged with the posts the viewer recently engaged with (by overlap), and the
        authors of those posts (by how often). Graph filters and ranks them."""
        rows = await self._db.reader().fetch(
            """WITH mine AS (
                   SELECT post_id, author_id FROM feed.interactions
                   WHERE viewer_id = $1 AND kind = ANY($2::smallint[])
                   ORDER BY occurred_at DESC LIMIT $3),
               peers AS (
                   SELECT y.viewer_id AS user_id, count(DISTINCT y.post_id) AS strength
                   FROM (SELECT DISTINCT post_id FROM mine) m CROSS JOIN LATERAL (
                       SELECT viewer_id, post_id FROM feed.interactions x
                       WHERE x.post_id = m.post_id AND x.kind = ANY($2::smallint[])
                         AND x.viewer_id <> $1
                       ORDER BY occurred_at DESC LIMIT 200) y
                   GROUP BY y.viewer_id),
               authors AS (
                   SELECT author_id AS user_id, count(*) AS strength FROM mine
                   WHERE author_id <> $1 GROUP BY author_id)
               SELECT user_id FROM (SELECT * FROM peers UNION ALL SELECT * FROM authors) c
               GROUP BY user_id ORDER BY sum(strength) DESC, user_id DESC LIMIT $4""",
            viewer_id,
            list(ENGAGED),
            PROFILE_DEPTH,
            limit,
        )
        return [r["user_id"] for r in rows]

    async def affine_posts(
        self, viewer_id: int, since: datetime, limit: int = SOURCE_CAP
    ) -> list[tuple[int, int]]:
        """(post, author) of recent PUBLIC posts sharing a hashtag with, or written by an
        author of, the viewer's recently engaged posts; newest first."""
        rows = await self._db.reader().fetch(
            """WITH mine AS (
                   SELECT x.post_id, x.author_id FROM feed.interactions x
                   WHERE x.viewer_id = $1 AND x.kind = ANY($2::smallint[])
                   ORDER BY x.occurred_at DESC LIMIT $3),
               tags AS (
                   SELECT array_agg(tag) AS tags FROM (
                       SELECT tag FROM mine JOIN feed.posts p USING (post_id),
                           unnest(p.hashtags) AS tag
                       GROUP BY tag ORDER BY count(*) DESC LIMIT 20) t),
               authors AS (
                   SELECT author_id FROM mine WHERE author_id <> $1
                   GROUP BY author_id ORDER BY count(*) DESC LIMIT 20)
               SELECT p.post_id, p.author_id FROM feed.posts p
               WHERE p.visibility = $4 AND NOT p.deleted AND p.created_at >= $5
                 AND p.author_id <> $1
                 AND p.post_id NOT IN (SELECT post_id FROM mine)
                 AND (p.hashtags && coalesce((SELECT tags FROM tags), '{}')
                      OR p.author_id IN (SELECT author_id FROM authors))
               ORDER BY p.created_at DESC LIMIT $6""",
            viewer_id,
            list(ENGAGED),
            PROFILE_DEPTH,
            PUBLIC,
            since,
            limit,
        )
        return [(r["post_id"], r["author_id"]) for r in rows]

    async def unseen_public(self, viewer_id: int, post_ids: Sequence[int]) -> dict[int, int]:
        """post -> author of the given posts that are PUBLIC, not deleted, not the viewer's
        own and never shown to the viewer (no impression)."""
        if not post_ids:
            return {}
        rows = await self._db.reader().fetch(
            """SELECT p.post_id, p.author_id FROM feed.posts p
               WHERE p.post_id = ANY($2::bigint[]) AND p.visibility = $3 AND NOT p.deleted
                 AND p.author_id <> $1
                 AND NOT EXISTS (SELECT 1 FROM feed.impressions i
                                 WHERE i.viewer_id = $1 AND i.post_id = p.post_id)""",
            viewer_id,
            list(post_ids),
            PUBLIC,
        )
        return {r["post_id"]: r["author_id"] for r in rows}

    # -- ranking facts: the same query at serve time (as of now) and for training ----

    async def facts(
        self,
        viewer_ids: Sequence[int],
        post_ids: Sequence[int],
        author_ids: Sequence[int],
        at: Sequence[datetime],
    ) -> list[asyncpg.Record]:
        """Per (viewer, post, author, as-of time): what the log knew at that time.

        Rows come back in input order with likes, shares, comments (the post's, net),
        viewer_author (the viewer's engagements with the author's posts),
        tag_hits (the post's hashtags among the viewer's recent engagements') and
        peer_engaged (users who engaged with the post and share an engaged post
        with the viewer). Serving asks as of now; `train-ranker` as of each
        impression: one definition, no train/serve skew (`features.py`).
        """
        return await self._db.reader().fetch(
            FACTS_SQL,
            list(viewer_ids),
            list(post_ids),
            list(author_ids),
            list(at),
            list(ENGAGED),
            PROFILE_DEPTH,
        )

    # -- training and experiments (`socialmesh train-ranker` / `experiments report`) --

    async def training_impressions(self, since: datetime, limit: int) -> list[asyncpg.Record]:
        """The first impression of each (viewer, post) since `since`: viewer, post, author,
        the time it was shown (`at`), its source, and whether the viewer engaged with the
        post within a day after it (the label)."""
        return await self._db.reader().fetch(
            """WITH imp AS (
                   SELECT DISTINCT ON (i.viewer_id, i.post_id) i.viewer_id, i.post_id, i.source,
                       LEAST(coalesce(i.display_time, i.recorded_at), i.recorded_at) AS at
                   FROM feed.impressions i WHERE i.recorded_at >= $1
                   ORDER BY i.viewer_id, i.post_id, i.recorded_at
                   LIMIT $3)
               SELECT imp.viewer_id, imp.post_id, coalesce(p.author_id, 0) AS author_id,
                      imp.at, imp.source,
                      EXISTS (SELECT 1 FROM feed.interactions x
                              WHERE x.viewer_id = imp.viewer_id AND x.post_id = imp.post_id
                                AND x.kind = ANY($2::smallint[]) AND x.occurred_at >= imp.at
                                AND x.occurred_at < imp.at + interval '1 day') AS engaged
               FROM imp LEFT JOIN feed.posts p ON p.post_id = imp.post_id
               ORDER BY imp.at""",
            since,
            list(ENGAGED),
            limit,
        )

    async def record_exposures(
        self, viewer_id: int, assignments: Sequence[tuple[str, str]], item_count: int
    ) -> None:
        if not assignments:
            return
        await self._db.primary.execute(
            """INSERT INTO feed.exposures (viewer_id, experiment, arm, item_count)
               SELECT $1, e.experiment, e.arm, $4
               FROM unnest($2::text[], $3::text[]) AS e(experiment, arm)""",
            viewer_id,
            [e for e, _ in assignments],
            [a for _, a in assignments],
            item_count,
        )

    async def experiment_counts(self, experiment: str, since: datetime) -> list[asyncpg.Record]:
        """Per arm of `experiment`: users exposed, RANKED impressions (first per viewer and
        post) and how many of those the viewer engaged with within a day (the clicks)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", experiment):  # it goes into a regex
            raise ValueError(f"bad experiment name {experiment!r}")
        pattern = f"(^|;){experiment}=([^;]+)"
        return await self._db.reader().fetch(
            """WITH imp AS (
                   SELECT DISTINCT ON (i.viewer_id, i.post_id) i.viewer_id, i.post_id,
                       (regexp_match(i.arm, $2))[2] AS arm,
                       LEAST(coalesce(i.display_time, i.recorded_at), i.recorded_at) AS at
                   FROM feed.impressions i
                   WHERE i.served_kind = 1 AND i.recorded_at >= $3 AND i.arm ~ $2
                   ORDER BY i.viewer_id, i.post_id, i.recorded_at),
               clicks AS (
                   SELECT imp.arm, count(*) AS impressions,
                          count(*) FILTER (WHERE EXISTS (
                              SELECT 1 FROM feed.interactions x
                              WHERE x.viewer_id = imp.viewer_id AND x.post_id = imp.post_id
                                AND x.kind = ANY($4::smallint[]) AND x.occurred_at >= imp.at
                                AND x.occurred_at < imp.at + interval '1 day')) AS engaged
                   FROM imp GROUP BY imp.arm),
               exposed AS (
                   SELECT arm, count(DISTINCT viewer_id) AS users FROM feed.exposures
                   WHERE experiment = $1 AND served_at >= $3 GROUP BY arm)
               SELECT coalesce(exposed.arm, clicks.arm) AS arm,
                      coalesce(exposed.users, 0) AS users,
                      coalesce(clicks.impressions, 0) AS impressions,
                      coalesce(clicks.engaged, 0) AS engaged
               FROM exposed FULL JOIN clicks ON clicks.arm = exposed.arm
               ORDER BY 1""",
            experiment,
            pattern,
            since,
            list(ENGAGED),
        )
