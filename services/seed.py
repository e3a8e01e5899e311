"""`socialmesh seed`: a power-law social graph, loaded with COPY through each service's seeder.

Default shape: 120,000 users, 600,000 follows, one celebrity followed by
100,000 of them; the other follows pick followees with Zipf-like weights so a
few accounts are popular and most are not (as in real social graphs). Then
200,000 posts (popular accounts post more), 500,000 likes and 100,000 comments
concentrated on a few hot posts (Pareto).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services import registry
from services.kit.backfill import request_backfill
from services.kit.db import Database
from services.kit.ids import IdGenerator
from services.kit.migrations import migrate

#: Schemas whose search copies are kept from events (services/kit/backfill.py).
SEARCH_COPIES = ("post", "user")


class Progress:
    """A dependency-free progress bar on stderr."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        filled = int(30 * self.done / self.total)
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(
            f"\r{self.label:<10} [{'#' * filled}{'.' * (30 - filled)}] "
            f"{self.done:>9,}/{self.total:,} {rate:,.0f}/s"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def power_law_edges(
    n_users: int,
    n_follows: int,
    celebrity_followers: int,
    rng: random.Random,
    exponent: float = 1.1,
) -> list[tuple[int, int]]:
    """Edges (follower index, followee index); index 0 is the celebrity."""
    edges: set[tuple[int, int]] = set()
    for follower in rng.sample(range(1, n_users), min(celebrity_followers, n_users - 1)):
        edges.add((follower, 0))
    cumulative = list(
        itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, n_users + 1))
    )
    total = cumulative[-1]
    while len(edges) < n_follows:
        follower = rng.randrange(n_users)
        followee = bisect.bisect_left(cumulative, rng.random() * total)
        if follower != followee:
            edges.add((follower, min(followee, n_users - 1)))
    return list(edges)


@dataclass(frozen=True)
class Seeded:
    user_ids: list[int]  # index 0 is the celebrity
    post_ids: list[int]


async def load(
    database_url: str,
    n_users: int,
    follows_idx: list[tuple[int, int]],
    *,
    ids: IdGenerator,
    rng: random.Random,
    posts: int = 0,
    likes: int = 0,
    comments: int = 0,
    private_every: int = 0,
) -> Seeded:
    """Migrates every implemented service, then fills it with COPY.

    Each table is filled by its own service's seeder (`registry.Service.seeder`);
    `follows_idx` are (follower, followee) indexes into the generated users.
    `socialmesh seed` and `socialmesh bench` both load their data through here.
    """
    user_seeder, graph_seeder, post_seeder = (
        registry.get(name).load_seeder() for name in ("user", "graph", "post")
    )
    db = await Database.connect(database_url)
    try:
        async with db.primary.acquire() as conn:
            for name in registry.IMPLEMENTED:
                spec = registry.get(name).build_spec()
                await migrate(conn, spec.schema, spec.migrations_dir)
        user_ids = [ids.next_id() for _ in range(n_users)]
        async with db.transaction() as conn:
            await user_seeder.seed_users(
                conn,
                user_ids,
                private_every=private_every,
                progress=Progress("users", len(user_ids)),
            )
        async with db.transaction() as conn:
            await graph_seeder.seed_follows(
                conn,
                [(user_ids[a], user_ids[b]) for a, b in follows_idx],
                ids,
                progress=Progress("follows", len(follows_idx)),
            )
        post_ids: list[int] = []
        if posts:
            async with db.transaction() as conn:
                post_ids = await post_seeder.seed_posts(
                    conn,
                    user_ids,
                    ids,
                    n_posts=posts,
                    n_likes=likes,
                    n_comments=comments,
                    rng=rng,
                    progress=Progress("posts", posts + likes + comments),
                )
        async with db.primary.acquire() as conn:
            await conn.execute(
                'ANALYZE graph.follows; ANALYZE graph.counts; ANALYZE "user".users; '
                "ANALYZE post.posts"
            )
            # COPY raises no events: the search copies of follows, blocks and account
            # states must be back-filled from the exports. Running services do it
            # within a minute, stopped ones at start (docs/search.md, "Back-fill").
            for copy in SEARCH_COPIES:
                await request_backfill(conn, copy)
    finally:
        await db.close()
    return Seeded(user_ids, post_ids)


async def seed(args: argparse.Namespace, database_url: str) -> Seeded:
    """Loads a power-law graph of users and follows and (if asked) posts, likes, comments."""
    rng = random.Random(args.random_seed)
    started = time.monotonic()
    edges_idx = power_law_edges(args.users, args.follows, args.celebrity_followers, rng)
    print(
        f"generated {len(edges_idx):,} edges in {time.monotonic() - started:.1f}s", file=sys.stderr
    )
    n_posts = getattr(args, "posts", 0)
    load_started = time.monotonic()
    seeded = await load(
        database_url,
        args.users,
        edges_idx,
        ids=IdGenerator(1023),
        rng=rng,
        posts=n_posts,
        likes=getattr(args, "likes", 0),
        comments=getattr(args, "comments", 0),
        private_every=args.private_every,
    )
    print(
        f"seeded {args.users:,} users and {len(edges_idx):,} follows in "
        f"{time.monotonic() - load_started:.1f}s (COPY); celebrity user_id={seeded.user_ids[0]} "
        f"handle=seed_0 with {args.celebrity_followers:,} followers; "
        f"{n_posts:,} posts, {getattr(args, 'likes', 0):,} likes, "
        f"{getattr(args, 'comments', 0):,} comments; search copies will be back-filled by "
        "the running services within a minute, or at their next start",
    )
    from services.user.seed import SEED_PASSWORD

    print(f"sign in as seed_0 ... seed_{args.users - 1} with password {SEED_PASSWORD!r}")
    return seeded


def main(args: argparse.Namespace) -> int:
    import os

    url = os.environ.get("DATABASE_URL", "")
    server = None
    if not url:
        import pgserver

        # Shares the instance `socialmesh up` runs on this data dir, if any; stops
        # it afterwards only if no other process still uses it.
        data_dir = Path(args.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data_dir / "postgres"))
        url = server.get_uri()
    try:
        asyncio.run(seed(args, url))
    finally:
        if server is not None:
            server.cleanup()
    return 0
