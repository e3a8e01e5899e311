"""Bulk-loads synthetic accounts into the user service's own tables with COPY."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
from argon2 import PasswordHasher

SEED_PASSWORD = "seed-password"


async def seed_users(
    conn: asyncpg.Connection,
    user_ids: Sequence[int],
    *,
    private_every: int = 0,
    progress: Callable[[int], None] = lambda n: None,
    chunk: int = 20_000,
) -> None:
    """Accounts `seed_<n>` (password SEED_PASSWORD); every Nth one private if asked."""
    password_hash = PasswordHasher().hash(SEED_PASSWORD)  # one hash: seeding is not login
    now = datetime.now(UTC)
    columns = (
        "user_id",
        "handle",
        "email",
        "password_hash",
        "display_name",
        "is_private",
        "created_at",
        "updated_at",
    )
    for start in range(0, len(user_ids), chunk):
        records = [
            (
                uid,
                f"seed_{n}",
                f"seed_{n}@seed.socialmesh.dev",
                password_hash,
                f"Seed User {n}",
                bool(private_every) and n % private_every == 0,
                now,
                now,
            )
            for n, uid in enumerate(user_ids[start : start + chunk], start=start)
        ]
        await conn.copy_records_to_table(
            "users", records=records, columns=columns, schema_name="user"
        )
        progress(len(records))
