"""The notification tables' SQL shared by the consumer and the reads: groups, marks, counts, pushes.

Every method takes the caller's connection, so the consumer's writes commit
with its event log entries and `claim_event`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from socialmesh.chat.v1 import chat_pb2

from services.kit.ids import IdGenerator
from services.kit.migrations import quote_ident
from services.kit.timestamps import from_datetime

from .activity import FOLLOW, Activity

#: Newest actors a group shows (chat.proto: "up to 8").
MAX_SAMPLE_ACTORS = 8


def notification_proto(row: Mapping[str, Any], last_read_id: int) -> chat_pb2.Notification:
    sample = [int(a) for a in row["sample_actor_ids"]]
    notification = chat_pb2.Notification(
        notification_id=int(row["notification_id"]),
        type=int(row["kind"]),  # type: ignore[arg-type]
        actor_id=sample[0] if sample else 0,
        post_id=int(row["post_id"]) or None,  # absent when none, never "0"
        comment_id=int(row["comment_id"]) or None,
        read=int(row["notification_id"]) <= last_read_id,
        group_key=str(row["group_key"]),
        sample_actor_ids=sample,
        actor_count=int(row["actor_count"]),
        snippet=str(row["snippet"]),
    )
    notification.create_time.CopyFrom(from_datetime(row["create_time"]))
    notification.latest_time.CopyFrom(from_datetime(row["latest_time"]))
    return notification


class NotificationStore:
    """SQL over chat's notification tables in `schema`."""

    def __init__(self, ids: IdGenerator, *, schema: str = "chat") -> None:
        self._ids = ids
        #: The quoted schema, for f-strings.
        self.s = quote_ident(schema)

    async def upsert(
        self, conn: asyncpg.Connection, a: Activity, at: datetime
    ) -> chat_pb2.Notification | None:
        """Adds the activity to its group; None when nothing changed.

        A repeat by an actor already in the group (unlike and like again)
        changes nothing, so nobody can bump a group to the top at will. A
        dismissed group starts over with this actor.
        """
        s = self.s
        if a.kind == FOLLOW:
            # Accepting a request also emits Followed: the recipient approved
            # this follower themselves, which is no news to them.
            asked = await conn.fetchval(
                f"SELECT true FROM {s}.notifications WHERE user_id = $1 AND group_key = $2",
                a.recipient,
                f"request:{a.actor}",
            )
            if asked:
                return None
        dismissed = await conn.fetchval(
            f"SELECT dismissed FROM {s}.notifications WHERE user_id = $1 AND group_key = $2"
            " FOR UPDATE",
            a.recipient,
            a.group_key,
        )
        if dismissed:
            await conn.execute(
                f"DELETE FROM {s}.notification_actors WHERE user_id = $1 AND group_key = $2",
                a.recipient,
                a.group_key,
            )
        new_actor = await conn.fetchval(
            f"""INSERT INTO {s}.notification_actors (user_id, group_key, actor_id)
                VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
            a.recipient,
            a.group_key,
            a.actor,
        )
        if not new_actor:
            return None
        row = await conn.fetchrow(
            f"""INSERT INTO {s}.notifications AS n
                    (notification_id, user_id, kind, group_key, post_id, comment_id, snippet,
                     sample_actor_ids, actor_count, create_time, latest_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7, ARRAY[$8::bigint], 1, $9, $9)
                ON CONFLICT (user_id, group_key) DO UPDATE SET
                    notification_id = EXCLUDED.notification_id,
                    comment_id = EXCLUDED.comment_id,
                    snippet = EXCLUDED.snippet,
                    sample_actor_ids = CASE WHEN n.dismissed THEN EXCLUDED.sample_actor_ids
                        ELSE (ARRAY[$8::bigint] || array_remove(n.sample_actor_ids, $8))[1:$10]
                        END,
                    actor_count = CASE WHEN n.dismissed THEN 1 ELSE n.actor_count + 1 END,
                    create_time = CASE WHEN n.dismissed THEN EXCLUDED.create_time
                        ELSE n.create_time END,
                    latest_time = CASE WHEN n.dismissed THEN EXCLUDED.latest_time
                        ELSE greatest(n.latest_time, EXCLUDED.latest_time) END,
                    dismissed = false
                RETURNING *""",
            self._ids.next_id(),
            a.recipient,
            a.kind,
            a.group_key,
            a.post_id,
            a.comment_id,
            a.snippet,
            a.actor,
            at,
            MAX_SAMPLE_ACTORS,
        )
        # A fresh id is above any read mark: unread.
        return notification_proto(row, 0)

    async def marker(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
        value = await conn.fetchval(
            f"SELECT last_read_id FROM {self.s}.notification_markers WHERE user_id = $1",
            user_id,
        )
        return int(value or 0)

    async def unread(self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> int:
        value = await conn.fetchval(
            f"""SELECT count(*) FROM {self.s}.notifications
                WHERE user_id = $1 AND NOT dismissed
                  AND notification_id > coalesce(
                      (SELECT last_read_id FROM {self.s}.notification_markers
                       WHERE user_id = $1), 0)""",
            user_id,
        )
        return int(value or 0)

    async def counts(
        self, conn: asyncpg.Connection | asyncpg.Pool, user_id: int, messages: tuple[int, int]
    ) -> chat_pb2.UnreadCounts:
        return chat_pb2.UnreadCounts(
            notifications=await self.unread(conn, user_id),
            messages=messages[0],
            conversations=messages[1],
        )

    async def enqueue_push(
        self, conn: asyncpg.Connection, user_ids: Sequence[int], event: chat_pb2.ChatEvent
    ) -> None:
        """Queues `event` for every push endpoint of `user_ids`, in the caller's transaction.

        Call `Notifications.poke_push()` after the commit to send without waiting for the
        worker's next poll.
        """
        if not user_ids:
            return
        endpoints = await conn.fetch(
            f"SELECT push_endpoint_id FROM {self.s}.push_endpoints"
            " WHERE user_id = ANY($1::bigint[])",
            list(set(user_ids)),
        )
        if not endpoints:
            return
        payload = event.SerializeToString()
        await conn.execute(
            f"""INSERT INTO {self.s}.push_deliveries (delivery_id, push_endpoint_id, payload)
                SELECT d, e, $3 FROM unnest($1::bigint[], $2::bigint[]) AS t(d, e)""",
            [self._ids.next_id() for _ in endpoints],
            [int(r["push_endpoint_id"]) for r in endpoints],
            payload,
        )
