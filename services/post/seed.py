"""Bulk-loads posts, likes and comments into the post service's own tables with COPY.

Counters (likes, comments, posts per author) are computed from the generated
rows and loaded with them, so they are exact from the first read.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from services.kit.ids import IdGenerator


async def seed_posts(
    conn: asyncpg.Connection,
    authors: Sequence[int],
    ids: IdGenerator,
    *,
    n_posts: int,
    n_likes: int,
    n_comments: int,
    rng: random.Random,
    progress: Callable[[int], None] = lambda n: None,
) -> list[int]:
    """Posts by authors picked with Zipf-like weights (popular accounts post more)."""
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(authors))]
    post_authors = rng.choices(authors, weights=weights, k=n_posts)
    now = datetime.now(UTC)
    post_ids = [ids.next_id() for _ in range(n_posts)]
    likes: set[tuple[int, int]] = set()
    while len(likes) < n_likes:
        likes.add(
            (post_ids[min(int(rng.paretovariate(1.2)) - 1, n_posts - 1)], rng.choice(authors))
        )
    like_counts = Counter(p for p, _ in likes)
    comments = [
        (
            ids.next_id(),
            post_ids[min(int(rng.paretovariate(1.2)) - 1, n_posts - 1)],
            rng.choice(authors),
            f"seed comment {i}",
            now,
        )
        for i in range(n_comments)
    ]
    comment_counts = Counter(c[1] for c in comments)
    await conn.copy_records_to_table(
        "posts",
        records=[
            (
                pid,
                author,
                f"seed post {i} #seed",
                1,
                ["seed"],
                like_counts[pid],
                comment_counts[pid],
                now,
            )
            for i, (pid, author) in enumerate(zip(post_ids, post_authors, strict=True))
        ],
        columns=(
            "post_id",
            "author_id",
            "text",
            "visibility",
            "hashtags",
            "like_count",
            "comment_count",
            "created_at",
        ),
        schema_name="post",
    )
    progress(n_posts)
    # Search (docs/search.md): COPY cannot call the document function, so the
    # seeded rows get their tsvector and their hashtags' counts here.
    await conn.execute(
        """UPDATE post.posts SET search_tsv = post.search_document(text)
           WHERE post_id = ANY($1::bigint[])""",
        post_ids,
    )
    await conn.execute(
        """INSERT INTO post.tag_counts (tag, post_count)
           SELECT t, count(*) FROM post.posts, unnest(hashtags) AS t
           WHERE post_id = ANY($1::bigint[]) AND visibility = 1 GROUP BY t ORDER BY t
           ON CONFLICT (tag) DO UPDATE
           SET post_count = post.tag_counts.post_count + EXCLUDED.post_count""",
        post_ids,
    )
    await conn.copy_records_to_table(
        "likes",
        records=[(p, u, now) for p, u in likes],
        columns=("post_id", "user_id", "created_at"),
        schema_name="post",
    )
    progress(len(likes))
    await conn.copy_records_to_table(
        "comments",
        records=comments,
        columns=("comment_id", "post_id", "author_id", "text", "created_at"),
        schema_name="post",
    )
    progress(n_comments)
    per_author = Counter(post_authors)
    await conn.execute(
        "CREATE TEMP TABLE seed_author_counts (LIKE post.author_counts) ON COMMIT DROP"
    )
    await conn.copy_records_to_table(
        "seed_author_counts", records=list(per_author.items()), columns=("user_id", "post_count")
    )
    await conn.execute(
        """INSERT INTO post.author_counts SELECT * FROM seed_author_counts
           ON CONFLICT (user_id) DO UPDATE
           SET post_count = post.author_counts.post_count + EXCLUDED.post_count"""
    )
    return post_ids
