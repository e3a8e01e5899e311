"""Bulk-loads a follow graph into the graph service's own tables with COPY.

Counts are computed from the generated edges and loaded alongside, so they are
exact from the first read (no recount afterwards).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import asyncpg

from services.kit.ids import IdGenerator


async def seed_follows(
    conn: asyncpg.Connection,
    edges: Sequence[tuple[int, int]],
    ids: IdGenerator,
    *,
    progress: Callable[[int], None] = lambda n: None,
    chunk: int = 50_000,
) -> None:
    followers: Counter[int] = Counter()
    following: Counter[int] = Counter()
    for start in range(0, len(edges), chunk):
        batch = edges[start : start + chunk]
        await conn.copy_records_to_table(
            "follows",
            records=[(a, b, ids.next_id()) for a, b in batch],
            columns=("follower_id", "followee_id", "edge_id"),
            schema_name="graph",
        )
        for a, b in batch:
            following[a] += 1
            followers[b] += 1
        progress(len(batch))
    users = set(followers) | set(following)
    await conn.execute("CREATE TEMP TABLE seed_counts (LIKE graph.counts) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "seed_counts",
        records=[(u, followers[u], following[u]) for u in users],
        columns=("user_id", "follower_count", "following_count"),
    )
    await conn.execute(
        """INSERT INTO graph.counts SELECT * FROM seed_counts
           ON CONFLICT (user_id) DO UPDATE SET
             follower_count = graph.counts.follower_count + EXCLUDED.follower_count,
             following_count = graph.counts.following_count + EXCLUDED.following_count"""
    )
