"""People search (issue 13): handle prefix and fuzzy display name, in one SQL query.

* Handle prefix: a range on `lower(handle)` served by the `text_pattern_ops`
  index (`~>=~`/`~<~`, so the plan does not depend on the parameter's value).
* Fuzzy name: `"user".trigrams(display_name)` (pg_trgm's trigrams over the
  accent- and case-folded words, computed by an IMMUTABLE SQL function: the
  embedded PostgreSQL has no pg_trgm) with a GIN index; candidates share a
  trigram with the query, similarity is shared / (|A| + |B| - shared) as in pg_trgm.
* Ranking: match quality (exact handle 3, handle prefix 2..3, name 0..1.5),
  then whether the viewer follows the account, then follower count, then id.
  Quality is a pure function of the query and the row, so keyset pagination on
  (quality, following, followers, id) is exact for a given query.
* Accounts either side of a block with the viewer are excluded in the query,
  from this service's projection of the graph events (search_copy.py, consumer
  group `user-search`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.user.v1 import user_pb2

from services.kit.auth import require_service
from services.kit.backfill import BackfillResult, BackfillWorker, backfill_relationships
from services.kit.consumers import EventHandlers
from services.kit.db import Database
from services.kit.errors import InvalidArgument
from services.kit.pagination import PageSizes, PageTokens, page_size
from services.kit.ratelimit import RateLimiter
from services.kit.relationships import Executor
from services.kit.search import fetch_planned_per_query, limit_anonymous
from services.kit.validation import strip_control_characters

from .search_copy import SearchCopy
from .store import _USER_COLUMNS, UserRecord, UserStore

MAX_QUERY = 100
USER_PAGES = PageSizes(default=10, maximum=50)
#: Fuzzy name matches below this similarity are left out (pg_trgm's default).
MIN_SIMILARITY = 0.3
#: Fuzzy (typo) candidates examined at most, whatever the query (see `_fetch`).
FUZZY_CANDIDATES = 1000
#: ... and only when the exact handle/name-prefix matches are fewer than this.
FUZZY_WHEN_FEWER = 10
MAX_HANDLE = 30
HANDLE_PREFIX = re.compile(rf"^[a-z0-9_]{{1,{MAX_HANDLE}}}$")
#: Accounts whose name words start with the query's words, examined at most: a
#: common word ("user") starts most names, and any handle match outranks them all.
NAME_CANDIDATES = 2000
#: ExportAccountStates pages (user.proto): a back-fill reads every account.
EXPORT_PAGES = PageSizes(default=5_000, maximum=10_000)


@dataclass(frozen=True)
class Hit:
    record: UserRecord
    quality: float
    following: bool
    followers: int


class UserSearch:
    def __init__(self, db: Database, tokens: PageTokens, limiter: RateLimiter) -> None:
        self._db = db
        self._tokens = tokens
        self._limiter = limiter

    def handlers(self) -> EventHandlers:
        """The projection's handlers (the `user-search` group itself: search_copy.py)."""
        return SearchCopy(self._db).handlers()

    # -- back-fill (docs/search.md, "Back-fill") ------------------------------------

    def backfill_worker(self, graph: graph_pb2_grpc.GraphServiceAsyncStub) -> BackfillWorker:
        """Back-fills in the background whenever the copy never was."""

        async def fill(event_id: int, result: BackfillResult) -> None:
            await backfill(self._db, graph, event_id, result)

        return BackfillWorker(self._db, "user", fill)

    # -- search -------------------------------------------------------------------

    async def limit_anonymous(self, context: grpc.aio.ServicerContext) -> int | None:
        """The viewer; an anonymous caller spends one unit of its client's budget."""
        return await limit_anonymous(self._limiter, context)

    async def search(
        self, request: user_pb2.SearchUsersRequest, viewer: int | None
    ) -> tuple[list[UserRecord], str]:
        # '+' is a space (form-encoded REST queries reach us with it; see post search).
        text = " ".join(strip_control_characters(request.query).replace("+", " ").split())
        if not text:
            raise InvalidArgument([("query", "required")])
        if len(text) > MAX_QUERY:
            raise InvalidArgument([("query", f"at most {MAX_QUERY} characters")])
        size = page_size(request.page_size, default=USER_PAGES.default, maximum=USER_PAGES.maximum)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        scope = f"search-users:{viewer or 0}:{digest}"
        data = self._tokens.decode(scope, request.page_token)
        after = None if data is None else _position(data)
        handle = text.lower().removeprefix("@")
        hits = await self._fetch(
            viewer,
            handle if HANDLE_PREFIX.match(handle) else None,
            text.removeprefix("@"),
            after,
            size + 1,
        )
        token = ""
        if len(hits) > size:
            last = hits[size - 1]
            token = self._tokens.encode(
                scope,
                {
                    "q": last.quality,
                    "f": int(last.following),
                    "n": last.followers,
                    "i": last.record.user_id,
                },
            )
        return [h.record for h in hits[:size]], token

    async def _fetch(
        self,
        viewer: int | None,
        handle: str | None,
        name: str,
        after: tuple[float, int, int, int] | None,
        limit: int,
    ) -> list[Hit]:
        args: list[Any] = [viewer, name, MIN_SIMILARITY]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        # Candidates: handle prefix (btree) and names whose words start with the
        # query's words (GIN tsvector) are selective and complete. Fuzzy names (a
        # shared trigram, GIN text[]) are the typo fallback: considered only when
        # those found fewer than FUZZY_WHEN_FEWER accounts (the same for every page
        # of a query), and capped, because a common trigram is in most names.
        candidates = []
        if handle is None or "_" not in handle:
            # A query with '_' is a handle being typed: names are not searched for
            # its words (they stay reachable through the fuzzy stage).
            candidates.append(
                f"""(SELECT u.user_id FROM "user".users u, q
                    WHERE u.deleted_at IS NULL AND u.name_words @@ q.pq
                    LIMIT {NAME_CANDIDATES})"""
            )
        handle_score = "0::float8"
        no_exact_handle = ""
        if handle is not None:
            low, high = arg(handle), arg(handle[:-1] + chr(ord(handle[-1]) + 1))
            in_range = f"lower(u.handle) ~>=~ {low} AND lower(u.handle) ~<~ {high}"
            shortest = _shortest_first(after, len(handle))
            if shortest is not None:
                # A prefix match's quality falls with the handle's length, so the best
                # are the shortest: read lengths in order (one index range each,
                # users_handle_length_prefix) until `limit` rows lie beyond the first
                # length, instead of scoring every match of a short prefix.
                x_range = f"lower(x.handle) ~>=~ {low} AND lower(x.handle) ~<~ {high}"
                candidates.append(
                    f"""SELECT h.user_id FROM (
                            WITH RECURSIVE lens(len, beyond) AS (
                                SELECT {arg(shortest)}::int, 0::bigint
                                UNION ALL
                                SELECT lens.len + 1, lens.beyond + (
                                    SELECT count(*) FROM "user".users x
                                    WHERE x.deleted_at IS NULL
                                      AND length(lower(x.handle)) = lens.len + 1 AND {x_range})
                                FROM lens
                                WHERE lens.beyond < {arg(limit)} AND lens.len < {MAX_HANDLE})
                            SELECT len FROM lens) l
                        CROSS JOIN LATERAL (
                            SELECT x.user_id FROM "user".users x
                            WHERE x.deleted_at IS NULL
                              AND length(lower(x.handle)) = l.len AND {x_range}) h"""
                )
            # Someone who typed a whole handle is not looking for typos of it.
            no_exact_handle = f"""AND NOT EXISTS (SELECT 1 FROM "user".users x
                                    WHERE lower(x.handle) = {low} AND x.deleted_at IS NULL)"""
            handle_score = f"""CASE WHEN lower(u.handle) = {low} THEN 3::float8
                 WHEN {in_range} THEN 2 + length({low})::float8 / length(u.handle)
                 ELSE 0::float8 END"""
        keyset = ""
        if after is not None:
            keyset = f"""AND (quality, following, followers, user_id)
                         < ({arg(after[0])}::float8, {arg(after[1])}::int,
                            {arg(after[2])}::bigint, {arg(after[3])}::bigint)"""
        exact = "\n UNION \n".join(candidates)
        fuzzy = f"""SELECT u.user_id FROM "user".users u, q
                    WHERE (SELECT count(*) FROM exact) < {FUZZY_WHEN_FEWER} {no_exact_handle}
                      AND u.deleted_at IS NULL AND u.name_trigrams && q.tg
                    LIMIT {FUZZY_CANDIDATES}"""
        sql = f"""
        WITH q AS MATERIALIZED (
            SELECT "user".trigrams($2) AS tg,
                   (SELECT to_tsquery('simple', string_agg(quote_literal(w) || ':*', ' & '))
                    FROM regexp_split_to_table("user".search_fold($2), '[^[:alnum:]]+') AS w
                    WHERE w <> '') AS pq
        ), exact AS MATERIALIZED ({exact}
        ), candidates AS (SELECT user_id FROM exact UNION ({fuzzy})
        ), scored AS (
            SELECT {_USER_COLUMNS.replace("user_id", "u.user_id")},
                   -- A handle match (>= 2) beats any name match (<= 1.5), so the
                   -- name is scored only for the others (CASE evaluates lazily).
                   CASE WHEN {handle_score} > 0 THEN {handle_score} ELSE (
                       SELECT o.shared
                              / GREATEST(cardinality(u.name_trigrams)
                                         + cardinality(q.tg) - o.shared, 1)
                              -- every query word starts a word of the name: typeahead
                              + CASE WHEN coalesce(u.name_words @@ q.pq, false)
                                     THEN 0.5 ELSE 0 END
                       FROM (SELECT count(*)::float8 AS shared FROM unnest(u.name_trigrams) g
                             WHERE g = ANY(q.tg)) o
                   ) END AS quality,
                   (EXISTS (SELECT 1 FROM "user".search_follows f
                            WHERE f.follower_id = $1 AND f.followee_id = u.user_id
                              AND f.following))::int AS following,
                   coalesce(c.follower_count, 0) AS followers
            FROM candidates
            JOIN "user".users u USING (user_id)
            CROSS JOIN q
            LEFT JOIN "user".search_follower_counts c ON c.user_id = u.user_id
            WHERE NOT EXISTS (
                  SELECT 1 FROM "user".search_blocks b
                  WHERE b.blocking AND ((b.blocker_id = $1 AND b.blocked_id = u.user_id)
                                     OR (b.blocker_id = u.user_id AND b.blocked_id = $1)))
        )
        SELECT * FROM scored
        WHERE quality >= $3
        {keyset}
        ORDER BY quality DESC, following DESC, followers DESC, user_id DESC
        LIMIT {arg(limit)}"""
        rows = await fetch_planned_per_query(self._db, sql, args)
        return [
            Hit(UserRecord.from_row(r), float(r["quality"]), bool(r["following"]), r["followers"])
            for r in rows
        ]


def _shortest_first(after: tuple[float, int, int, int] | None, typed: int) -> int | None:
    """The handle length a page's prefix matches start at; None when none can follow.

    Quality is 3 for the exact handle and 2 + typed/length for a longer one, so the
    previous page's last quality tells the length it reached (rows of that length
    may remain: it is read again whole).
    """
    if after is None or after[0] >= 3:
        return typed
    if after[0] < 2:
        return None  # the last row was a name match: every handle match came before
    return min(max(round(typed / (after[0] - 2)), typed), MAX_HANDLE)


def _position(data: dict[str, Any]) -> tuple[float, int, int, int]:
    q, f, n, i = data.get("q"), data.get("f"), data.get("n"), data.get("i")
    ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (f, n, i))
    if not ints or not isinstance(q, (int, float)) or isinstance(q, bool):
        raise InvalidArgument([("page_token", "invalid or tampered page token")])
    return float(q), int(f), int(n), int(i)  # type: ignore[arg-type]


async def export_account_states(
    store: UserStore, tokens: PageTokens, request: user_pb2.ExportAccountStatesRequest
) -> user_pb2.ExportAccountStatesResponse:
    """ExportAccountStates (user.proto): services only, every account by id."""
    require_service()
    page = tokens.page("export-account-states", "user_id", request, EXPORT_PAGES)
    rows = await store.export_account_states(page.position, page.limit)
    return user_pb2.ExportAccountStatesResponse(
        accounts=[
            user_pb2.AccountState(user_id=u, is_private=private, deleted=deleted)
            for u, private, deleted in page.rows(rows)
        ],
        next_page_token=page.next_token(rows, lambda row: row[0]),
    )


# -- back-fill (docs/search.md, "Back-fill") ----------------------------------------


async def backfill(
    db: Database,
    graph: graph_pb2_grpc.GraphServiceAsyncStub,
    event_id: int,
    result: BackfillResult,
) -> None:
    """Fills the copy from graph's export; follower counts follow the flips."""
    await backfill_relationships(db, "user", graph, event_id, result, on_follow_flips=_count_flips)


async def _count_flips(conn: Executor, flips: list[tuple[int, int, bool]]) -> None:
    deltas: Counter[int] = Counter()
    for _, followee, on in flips:
        deltas[followee] += 1 if on else -1
    ids, changes = list(deltas), list(deltas.values())
    await conn.execute(
        """INSERT INTO "user".search_follower_counts (user_id, follower_count)
           SELECT user_id, delta FROM unnest($1::bigint[], $2::bigint[]) AS d(user_id, delta)
           ON CONFLICT (user_id) DO UPDATE SET follower_count =
             "user".search_follower_counts.follower_count + EXCLUDED.follower_count""",
        ids,
        changes,
    )
    await conn.execute(
        """UPDATE "user".search_follower_counts SET follower_count = 0
           WHERE user_id = ANY($1::bigint[]) AND follower_count < 0""",
        ids,
    )
