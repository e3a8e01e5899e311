"""Chat storage: conversations, members, messages, reactions (the chat schema).

Every write that someone should see appends to the recipients' event logs in
the same transaction (see eventlog.py); callers wake streams after commit with
the positions returned here.

One module on purpose (~870 lines): each write and the event-log appends it makes
commit in one transaction here, and splitting by table would spread one
transaction's SQL over several files. Push endpoints and notifications keep their
own stores (notifications/store.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from socialmesh.chat.v1 import chat_pb2
from socialmesh.media.v1 import media_pb2

from services.kit.db import Database
from services.kit.ids import IdGenerator
from services.kit.mediaview import slim
from services.kit.timestamps import from_datetime

from .eventlog import EventLog, event_at

DIRECT = chat_pb2.CONVERSATION_TYPE_DIRECT
GROUP = chat_pb2.CONVERSATION_TYPE_GROUP
ACCEPTED = chat_pb2.CONVERSATION_STATE_ACCEPTED
REQUEST = chat_pb2.CONVERSATION_STATE_REQUEST
OWNER = chat_pb2.MEMBER_ROLE_OWNER
ADMIN = chat_pb2.MEMBER_ROLE_ADMIN
MEMBER = chat_pb2.MEMBER_ROLE_MEMBER

_MESSAGE_COLUMNS = (
    "m.conversation_id, m.sequence, m.message_id, m.sender_id, m.text, m.media_ids,"
    " m.reply_to_message_id, m.create_time, m.update_time, m.delete_time, m.request_id,"
    " m.media"
)


@dataclass
class MemberRow:
    user_id: int
    role: int
    state: int
    join_time: datetime
    last_read_sequence: int

    def to_proto(self, viewer_id: int, hidden: Collection[int] = ()) -> chat_pb2.Member:
        """As the viewer sees it: a pending member's read mark (and that of anyone in
        `hidden`, a block) is the member's own business, so others see 0."""
        private = self.user_id != viewer_id and (self.state == REQUEST or self.user_id in hidden)
        return chat_pb2.Member(
            user_id=self.user_id,
            role=self.role,  # type: ignore[arg-type]
            join_time=from_datetime(self.join_time),
            last_read_sequence=0 if private else self.last_read_sequence,
            state=self.state,  # type: ignore[arg-type]
        )


@dataclass
class ConversationRow:
    conversation_id: int
    kind: int
    title: str
    creator_id: int
    max_sequence: int
    create_time: datetime
    update_time: datetime
    members: list[MemberRow] = field(default_factory=list)

    def member(self, user_id: int) -> MemberRow | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def accepted(self, user_id: int) -> bool:
        """Whether the user is a member who accepted (not a pending request)."""
        me = self.member(user_id)
        return me is not None and me.state == ACCEPTED

    def to_proto(
        self,
        viewer_id: int,
        last_message: chat_pb2.Message | None = None,
        blocked: Collection[int] = (),
    ) -> chat_pb2.Conversation:
        """As the viewer sees it; `blocked`: members with a block with the viewer
        (their read marks and their newest message are not shown)."""
        me = self.member(viewer_id)
        conversation = chat_pb2.Conversation(
            conversation_id=self.conversation_id,
            type=self.kind,  # type: ignore[arg-type]
            member_ids=[m.user_id for m in self.members],
            members=[m.to_proto(viewer_id, blocked) for m in self.members],
            title=self.title,
            create_time=from_datetime(self.create_time),
            update_time=from_datetime(self.update_time),
            max_sequence=self.max_sequence,
            unread_count=max(0, self.max_sequence - me.last_read_sequence) if me else 0,
            state=me.state if me else ACCEPTED,  # type: ignore[arg-type]
        )
        if last_message is not None and last_message.sender_id not in blocked:
            conversation.last_message.CopyFrom(last_message)
        return conversation


def message_from_row(
    row: asyncpg.Record, reactions: Sequence[tuple[str, int, bool]] = ()
) -> chat_pb2.Message:
    message = chat_pb2.Message(
        message_id=row["message_id"],
        conversation_id=row["conversation_id"],
        sender_id=row["sender_id"],
        text=row["text"],
        sequence=row["sequence"],
        create_time=from_datetime(row["create_time"]),
        media_ids=list(row["media_ids"]),
        reply_to_message_id=row["reply_to_message_id"] or None,  # absent, never "0"
    )
    if row["update_time"] is not None:
        message.update_time.CopyFrom(from_datetime(row["update_time"]))
    if row["delete_time"] is not None:
        message.delete_time.CopyFrom(from_datetime(row["delete_time"]))
    for emoji, count, mine in reactions:
        message.reactions.add(emoji=emoji, count=count, reacted_by_me=mine)
    if row["media"]:
        message.media.extend(media_pb2.AttachMediaResponse.FromString(row["media"]).media)
        # Every member gets the same view (events fan out alike): the slim one; the
        # sender reads the rest with GetMedia.
        slim(message.media)
    return message


@dataclass
class Delivery:
    """What a write produced: the stored resource and the log positions to wake."""

    positions: dict[int, int]
    message: chat_pb2.Message | None = None
    conversation: ConversationRow | None = None
    created: bool = True


class ChatStore:
    def __init__(self, db: Database, ids: IdGenerator, log: EventLog, schema: str = "chat") -> None:
        self._db = db
        self._ids = ids
        self._log = log
        self._s = schema

    # ---- conversations -------------------------------------------------------------

    async def _members(
        self, conn: asyncpg.Connection | asyncpg.Pool, conversation_ids: Sequence[int]
    ) -> dict[int, list[MemberRow]]:
        rows = await conn.fetch(
            f"SELECT conversation_id, user_id, role, state, join_time, last_read_sequence"
            f" FROM {self._s}.members WHERE conversation_id = ANY($1::bigint[])"
            " ORDER BY join_time, user_id",
            list(conversation_ids),
        )
        out: dict[int, list[MemberRow]] = {c: [] for c in conversation_ids}
        for r in rows:
            out[r["conversation_id"]].append(
                MemberRow(
                    r["user_id"], r["role"], r["state"], r["join_time"], r["last_read_sequence"]
                )
            )
        return out

    async def conversations(
        self, conversation_ids: Sequence[int], conn: asyncpg.Connection | None = None
    ) -> dict[int, ConversationRow]:
        source = conn if conn is not None else self._db.primary
        rows = await source.fetch(
            f"SELECT conversation_id, kind, title, creator_id, max_sequence, create_time,"
            f" update_time FROM {self._s}.conversations WHERE conversation_id = ANY($1::bigint[])",
            list(conversation_ids),
        )
        members = await self._members(source, [r["conversation_id"] for r in rows])
        return {
            r["conversation_id"]: ConversationRow(
                r["conversation_id"],
                r["kind"],
                r["title"],
                r["creator_id"],
                r["max_sequence"],
                r["create_time"],
                r["update_time"],
                members[r["conversation_id"]],
            )
            for r in rows
        }

    async def conversation(
        self, conversation_id: int, conn: asyncpg.Connection | None = None
    ) -> ConversationRow | None:
        return (await self.conversations([conversation_id], conn)).get(conversation_id)

    async def _joined_event(
        self,
        conn: asyncpg.Connection,
        conversation_id: int,
        actor_id: int,
        kind: int,
        user_ids: Sequence[int],
        recipients: Sequence[int],
    ) -> dict[int, int]:
        row = await self.conversation(conversation_id, conn)
        assert row is not None
        events = {}
        for recipient in recipients:
            change = chat_pb2.ConversationChange(
                kind=kind,  # type: ignore[arg-type]
                conversation=row.to_proto(recipient),
                actor_id=actor_id,
                user_ids=list(user_ids),
            )
            events[recipient] = event_at(row.update_time, conversation_changed=change)
        return await self._log.append(conn, events)

    async def create_direct(self, creator_id: int, other_id: int, other_state: int) -> Delivery:
        low, high = sorted((creator_id, other_id))
        key = f"{low}:{high}"
        async with self._db.transaction() as conn:
            conversation_id = await conn.fetchval(
                f"""INSERT INTO {self._s}.conversations
                        (conversation_id, kind, creator_id, direct_key)
                    VALUES ($1, $2, $3, $4) ON CONFLICT (direct_key) DO NOTHING
                    RETURNING conversation_id""",
                self._ids.next_id(),
                DIRECT,
                creator_id,
                key,
            )
            if conversation_id is None:
                existing = await conn.fetchval(
                    f"SELECT conversation_id FROM {self._s}.conversations WHERE direct_key = $1",
                    key,
                )
                row = await self.conversation(existing, conn)
                return Delivery({}, conversation=row, created=False)
            await conn.execute(
                f"""INSERT INTO {self._s}.members (conversation_id, user_id, role, state)
                    VALUES ($1, $2, $4, $5), ($1, $3, $4, $6)""",
                conversation_id,
                creator_id,
                other_id,
                MEMBER,
                ACCEPTED,
                other_state,
            )
            positions = await self._joined_event(
                conn,
                conversation_id,
                creator_id,
                chat_pb2.CONVERSATION_CHANGE_KIND_JOINED,
                [creator_id, other_id],
                [creator_id, other_id],
            )
            row = await self.conversation(conversation_id, conn)
        return Delivery(positions, conversation=row)

    async def create_group(
        self, creator_id: int, states: Mapping[int, int], title: str, request_id: str
    ) -> Delivery:
        """A group of the creator (owner) and `states`' members, each ACCEPTED or
        REQUEST (an invitation from someone they do not follow)."""
        async with self._db.transaction() as conn:
            conversation_id = await conn.fetchval(
                f"""INSERT INTO {self._s}.conversations
                        (conversation_id, kind, title, creator_id, create_request_id)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (creator_id, create_request_id) DO NOTHING
                    RETURNING conversation_id""",
                self._ids.next_id(),
                GROUP,
                title,
                creator_id,
                request_id or None,
            )
            if conversation_id is None:
                existing = await conn.fetchval(
                    f"SELECT conversation_id FROM {self._s}.conversations"
                    " WHERE creator_id = $1 AND create_request_id = $2",
                    creator_id,
                    request_id,
                )
                row = await self.conversation(existing, conn)
                return Delivery({}, conversation=row, created=False)
            others = [m for m in states if m != creator_id]
            await conn.execute(
                f"""INSERT INTO {self._s}.members (conversation_id, user_id, role, state)
                    SELECT $1, u, CASE WHEN u = $2 THEN $5::smallint ELSE $6::smallint END, s
                    FROM unnest($3::bigint[], $4::smallint[]) AS t(u, s)""",
                conversation_id,
                creator_id,
                [creator_id, *others],
                [ACCEPTED, *(states[m] for m in others)],
                OWNER,
                MEMBER,
            )
            everyone = [creator_id, *others]
            positions = await self._joined_event(
                conn,
                conversation_id,
                creator_id,
                chat_pb2.CONVERSATION_CHANGE_KIND_JOINED,
                everyone,
                everyone,
            )
            row = await self.conversation(conversation_id, conn)
        return Delivery(positions, conversation=row)

    async def inbox(
        self, user_id: int, state: int, after: tuple[datetime, int] | None, limit: int
    ) -> list[tuple[int, datetime]]:
        """Conversation ids, most recently active first, keyset by (activity, id)."""
        if after is None:
            rows = await self._db.primary.fetch(
                f"""SELECT conversation_id, activity_time FROM {self._s}.members
                    WHERE user_id = $1 AND state = $2
                    ORDER BY activity_time DESC, conversation_id DESC LIMIT $3""",
                user_id,
                state,
                limit,
            )
        else:
            rows = await self._db.primary.fetch(
                f"""SELECT conversation_id, activity_time FROM {self._s}.members
                    WHERE user_id = $1 AND state = $2
                      AND (activity_time, conversation_id) < ($3, $4)
                    ORDER BY activity_time DESC, conversation_id DESC LIMIT $5""",
                user_id,
                state,
                after[0],
                after[1],
                limit,
            )
        return [(r["conversation_id"], r["activity_time"]) for r in rows]

    async def last_messages(self, conversation_ids: Sequence[int]) -> dict[int, chat_pb2.Message]:
        rows = await self._db.primary.fetch(
            f"""SELECT {_MESSAGE_COLUMNS} FROM {self._s}.conversations c
                JOIN {self._s}.messages m
                  ON m.conversation_id = c.conversation_id AND m.sequence = c.max_sequence
                WHERE c.conversation_id = ANY($1::bigint[])""",
            list(conversation_ids),
        )
        return {r["conversation_id"]: message_from_row(r) for r in rows}

    async def shared_conversation_peers(self, user_id: int, limit: int = 5000) -> list[int]:
        """Everyone sharing a conversation with the user that both accepted (presence
        audience: a pending request or invitation shares nothing yet)."""
        rows = await self._db.primary.fetch(
            f"""SELECT DISTINCT o.user_id FROM {self._s}.members me
                JOIN {self._s}.members o ON o.conversation_id = me.conversation_id
                WHERE me.user_id = $1 AND o.user_id <> $1
                  AND me.state = $3 AND o.state = $3 LIMIT $2""",
            user_id,
            limit,
            ACCEPTED,
        )
        return [r["user_id"] for r in rows]

    async def share_a_conversation(self, user_id: int, others: Sequence[int]) -> set[int]:
        """Those of `others` in a conversation with the user that both accepted."""
        rows = await self._db.primary.fetch(
            f"""SELECT DISTINCT o.user_id FROM {self._s}.members me
                JOIN {self._s}.members o ON o.conversation_id = me.conversation_id
                WHERE me.user_id = $1 AND o.user_id = ANY($2::bigint[])
                  AND me.state = $3 AND o.state = $3""",
            user_id,
            list(others),
            ACCEPTED,
        )
        return {r["user_id"] for r in rows}

    async def update_title(self, conversation_id: int, actor_id: int, title: str) -> Delivery:
        async with self._db.transaction() as conn:
            await conn.execute(
                f"UPDATE {self._s}.conversations SET title = $2, update_time = now()"
                " WHERE conversation_id = $1",
                conversation_id,
                title,
            )
            row = await self.conversation(conversation_id, conn)
            assert row is not None
            positions = await self._joined_event(
                conn,
                conversation_id,
                actor_id,
                chat_pb2.CONVERSATION_CHANGE_KIND_RENAMED,
                [],
                [m.user_id for m in row.members],
            )
        return Delivery(positions, conversation=row)

    async def add_members(
        self, conversation_id: int, actor_id: int, states: Mapping[int, int], max_members: int
    ) -> Delivery:
        """Adds `states`' users, each ACCEPTED or REQUEST (an invitation)."""
        async with self._db.transaction() as conn:
            # The conversation row lock serialises membership changes (the cap holds).
            await conn.execute(
                f"SELECT 1 FROM {self._s}.conversations WHERE conversation_id = $1 FOR UPDATE",
                conversation_id,
            )
            before = await self.conversation(conversation_id, conn)
            assert before is not None
            present = {m.user_id for m in before.members}
            new = [u for u in states if u not in present]
            if len(present) + len(new) > max_members:
                return Delivery({}, conversation=before, created=False)
            if new:
                await conn.execute(
                    f"""INSERT INTO {self._s}.members (conversation_id, user_id, role, state)
                        SELECT $1, u, $4::smallint, s
                        FROM unnest($2::bigint[], $3::smallint[]) AS t(u, s)""",
                    conversation_id,
                    new,
                    [states[u] for u in new],
                    MEMBER,
                )
                await conn.execute(
                    f"UPDATE {self._s}.conversations SET update_time = now()"
                    " WHERE conversation_id = $1",
                    conversation_id,
                )
            positions: dict[int, int] = {}
            if new:
                positions.update(
                    await self._joined_event(
                        conn,
                        conversation_id,
                        actor_id,
                        chat_pb2.CONVERSATION_CHANGE_KIND_JOINED,
                        new,
                        new,
                    )
                )
                positions.update(
                    await self._joined_event(
                        conn,
                        conversation_id,
                        actor_id,
                        chat_pb2.CONVERSATION_CHANGE_KIND_MEMBERS_ADDED,
                        new,
                        sorted(present),
                    )
                )
            row = await self.conversation(conversation_id, conn)
        return Delivery(positions, conversation=row, created=bool(new))

    async def remove_member(self, conversation_id: int, actor_id: int, user_id: int) -> Delivery:
        """Removes (or, when actor == user, leaves); ownership passes on if the owner leaves."""
        async with self._db.transaction() as conn:
            await conn.execute(
                f"SELECT 1 FROM {self._s}.conversations WHERE conversation_id = $1 FOR UPDATE",
                conversation_id,
            )
            removed = await conn.fetchval(
                f"DELETE FROM {self._s}.members WHERE conversation_id = $1 AND user_id = $2"
                " RETURNING role",
                conversation_id,
                user_id,
            )
            if removed is None:
                return Delivery({}, created=False)
            if removed == OWNER:
                await conn.execute(
                    f"""UPDATE {self._s}.members SET role = $2
                        WHERE (conversation_id, user_id) = (
                            SELECT conversation_id, user_id FROM {self._s}.members
                            WHERE conversation_id = $1
                            ORDER BY role, join_time, user_id LIMIT 1)""",
                    conversation_id,
                    OWNER,
                )
            await conn.execute(
                f"UPDATE {self._s}.conversations SET update_time = now()"
                " WHERE conversation_id = $1",
                conversation_id,
            )
            row = await self.conversation(conversation_id, conn)
            assert row is not None
            positions = await self._joined_event(
                conn,
                conversation_id,
                actor_id,
                chat_pb2.CONVERSATION_CHANGE_KIND_MEMBER_REMOVED,
                [user_id],
                [m.user_id for m in row.members],
            )
            gone = chat_pb2.ConversationChange(
                kind=chat_pb2.CONVERSATION_CHANGE_KIND_REMOVED,
                conversation=chat_pb2.Conversation(conversation_id=conversation_id),
                actor_id=actor_id,
                user_ids=[user_id],
            )
            positions.update(
                await self._log.append(
                    conn, {user_id: event_at(row.update_time, conversation_changed=gone)}
                )
            )
        return Delivery(positions, conversation=row)

    async def accept(self, conversation_id: int, user_id: int) -> Delivery:
        async with self._db.transaction() as conn:
            changed = await conn.fetchval(
                f"UPDATE {self._s}.members SET state = $3"
                " WHERE conversation_id = $1 AND user_id = $2 AND state = $4 RETURNING 1",
                conversation_id,
                user_id,
                ACCEPTED,
                REQUEST,
            )
            positions: dict[int, int] = {}
            if changed:
                positions = await self._joined_event(
                    conn,
                    conversation_id,
                    user_id,
                    chat_pb2.CONVERSATION_CHANGE_KIND_ACCEPTED,
                    [user_id],
                    [user_id],
                )
            row = await self.conversation(conversation_id, conn)
        return Delivery(positions, conversation=row, created=bool(changed))

    # ---- messages ------------------------------------------------------------------

    async def message_by_request(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        conversation_id: int,
        sender_id: int,
        request_id: str,
    ) -> chat_pb2.Message | None:
        row = await conn.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM {self._s}.messages m"
            " WHERE conversation_id = $1 AND sender_id = $2 AND request_id = $3",
            conversation_id,
            sender_id,
            request_id,
        )
        return message_from_row(row) if row is not None else None

    async def send(
        self,
        conversation_id: int,
        sender_id: int,
        text: str,
        media_ids: Sequence[int],
        reply_to: int,
        request_id: str,
        media: Sequence[media_pb2.Media] = (),
        exclude: Collection[int] = (),
    ) -> Delivery:
        """Stores a message under the conversation's row lock (gapless sequence);
        members in `exclude` (a block with the sender) get no event of it."""
        if request_id:
            existing = await self.message_by_request(
                self._db.primary, conversation_id, sender_id, request_id
            )
            if existing is not None:
                return Delivery({}, message=existing, created=False)
        try:
            return await self._send(
                conversation_id, sender_id, text, media_ids, reply_to, request_id, media, exclude
            )
        except _Duplicate as duplicate:
            return Delivery({}, message=duplicate.message, created=False)

    async def _send(
        self,
        conversation_id: int,
        sender_id: int,
        text: str,
        media_ids: Sequence[int],
        reply_to: int,
        request_id: str,
        media: Sequence[media_pb2.Media],
        exclude: Collection[int],
    ) -> Delivery:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""UPDATE {self._s}.conversations
                    SET max_sequence = max_sequence + 1, update_time = now()
                    WHERE conversation_id = $1 RETURNING max_sequence, update_time""",
                conversation_id,
            )
            if request_id:
                # A concurrent retry may have committed while we waited for the lock.
                existing = await self.message_by_request(
                    conn, conversation_id, sender_id, request_id
                )
                if existing is not None:
                    raise _Duplicate(existing)
            stored = await conn.fetchrow(
                f"""INSERT INTO {self._s}.messages AS m (conversation_id, sequence, message_id,
                        sender_id, text, media_ids, reply_to_message_id, request_id, create_time,
                        media)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                    RETURNING {_MESSAGE_COLUMNS}""",
                conversation_id,
                row["max_sequence"],
                self._ids.next_id(),
                sender_id,
                text,
                list(media_ids),
                reply_to,
                request_id or None,
                row["update_time"],
                media_pb2.AttachMediaResponse(media=media).SerializeToString() if media else None,
            )
            members = await conn.fetch(
                f"""UPDATE {self._s}.members SET activity_time = $2,
                        last_read_sequence =
                            CASE WHEN user_id = $3 THEN $4 ELSE last_read_sequence END
                    WHERE conversation_id = $1 RETURNING user_id""",
                conversation_id,
                row["update_time"],
                sender_id,
                row["max_sequence"],
            )
            message = message_from_row(stored)
            events = {}
            for member in members:
                if member["user_id"] in exclude:
                    continue
                event = event_at(row["update_time"], message=message)
                if member["user_id"] == sender_id and request_id:
                    event.origin_request_id = request_id
                events[member["user_id"]] = event
            positions = await self._log.append(conn, events)
        return Delivery(positions, message=message)

    async def message(
        self,
        conversation_id: int,
        message_id: int,
        conn: asyncpg.Connection | None = None,
        viewer_id: int | None = None,
    ) -> chat_pb2.Message | None:
        """The message; with `viewer_id`, its reactions say which are the viewer's
        (an answer to them), else none is (events, which every member receives)."""
        source = conn if conn is not None else self._db.primary
        row = await source.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM {self._s}.messages m"
            " WHERE conversation_id = $1 AND message_id = $2",
            conversation_id,
            message_id,
        )
        if row is None:
            return None
        reactions = await self._reactions(source, [message_id], viewer_id)
        return message_from_row(row, reactions.get(message_id, ()))

    async def _reactions(
        self,
        source: asyncpg.Connection | asyncpg.Pool,
        message_ids: Sequence[int],
        viewer_id: int | None = None,
        hidden_reactors: Collection[int] = (),
    ) -> dict[int, list[tuple[str, int, bool]]]:
        """Reaction counts per message; `hidden_reactors` (a block with the viewer) do
        not count."""
        rows = await source.fetch(
            f"""SELECT message_id, emoji, count(*) AS n, bool_or(user_id = $2) AS mine
                FROM {self._s}.reactions
                WHERE message_id = ANY($1::bigint[]) AND user_id <> ALL($3::bigint[])
                GROUP BY message_id, emoji
                ORDER BY message_id, n DESC, emoji""",
            list(message_ids),
            viewer_id or 0,  # ids are positive: no viewer, none is theirs
            list(hidden_reactors),
        )
        out: dict[int, list[tuple[str, int, bool]]] = {}
        for r in rows:
            out.setdefault(r["message_id"], []).append((r["emoji"], int(r["n"]), r["mine"]))
        return out

    async def messages(
        self,
        conversation_id: int,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        viewer_id: int | None = None,
        hidden_reactors: Collection[int] = (),
    ) -> list[chat_pb2.Message]:
        if after is not None:
            rows = await self._db.primary.fetch(
                f"SELECT {_MESSAGE_COLUMNS} FROM {self._s}.messages m WHERE conversation_id = $1"
                " AND sequence > $2 ORDER BY sequence LIMIT $3",
                conversation_id,
                after,
                limit,
            )
        else:
            rows = await self._db.primary.fetch(
                f"SELECT {_MESSAGE_COLUMNS} FROM {self._s}.messages m WHERE conversation_id = $1"
                " AND sequence < $2 ORDER BY sequence DESC LIMIT $3",
                conversation_id,
                before if before is not None else 2**62,
                limit,
            )
        reactions = await self._reactions(
            self._db.primary, [r["message_id"] for r in rows], viewer_id, hidden_reactors
        )
        return [message_from_row(r, reactions.get(r["message_id"], ())) for r in rows]

    async def _member_ids(
        self, conn: asyncpg.Connection, conversation_id: int, exclude: Collection[int] = ()
    ) -> list[int]:
        """The members an event goes to: all but `exclude` (blocks, pending members)."""
        rows = await conn.fetch(
            f"SELECT user_id FROM {self._s}.members WHERE conversation_id = $1", conversation_id
        )
        return [r["user_id"] for r in rows if r["user_id"] not in exclude]

    async def edit(
        self, conversation_id: int, message_id: int, text: str, exclude: Collection[int] = ()
    ) -> Delivery:
        async with self._db.transaction() as conn:
            await conn.execute(
                f"UPDATE {self._s}.messages SET text = $3, update_time = now()"
                " WHERE conversation_id = $1 AND message_id = $2",
                conversation_id,
                message_id,
                text,
            )
            message = await self.message(conversation_id, message_id, conn)
            assert message is not None
            positions = await self._log.append_same(
                conn,
                await self._member_ids(conn, conversation_id, exclude),
                event_at(message.update_time.ToDatetime(), message_updated=message),
            )
        return Delivery(positions, message=message)

    async def delete(
        self, conversation_id: int, message_id: int, exclude: Collection[int] = ()
    ) -> Delivery:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""UPDATE {self._s}.messages SET text = '', media_ids = '{{}}', media = NULL,
                        delete_time = coalesce(delete_time, now())
                    WHERE conversation_id = $1 AND message_id = $2
                    RETURNING sequence, delete_time""",
                conversation_id,
                message_id,
            )
            await conn.execute(f"DELETE FROM {self._s}.reactions WHERE message_id = $1", message_id)
            deleted = chat_pb2.MessageDeleted(
                conversation_id=conversation_id, message_id=message_id, sequence=row["sequence"]
            )
            positions = await self._log.append_same(
                conn,
                await self._member_ids(conn, conversation_id, exclude),
                event_at(row["delete_time"], message_deleted=deleted),
            )
            message = await self.message(conversation_id, message_id, conn)
        return Delivery(positions, message=message)

    async def react(
        self,
        conversation_id: int,
        message_id: int,
        user_id: int,
        emoji: str,
        on: bool,
        exclude: Collection[int] = (),
    ) -> Delivery:
        async with self._db.transaction() as conn:
            if on:
                changed = await conn.fetchval(
                    f"INSERT INTO {self._s}.reactions (message_id, user_id, emoji)"
                    " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                    message_id,
                    user_id,
                    emoji,
                )
            else:
                changed = await conn.fetchval(
                    f"DELETE FROM {self._s}.reactions"
                    " WHERE message_id = $1 AND user_id = $2 AND emoji = $3 RETURNING 1",
                    message_id,
                    user_id,
                    emoji,
                )
            positions: dict[int, int] = {}
            if changed:
                change = chat_pb2.ReactionChange(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    user_id=user_id,
                    emoji=emoji,
                    added=on,
                )
                positions = await self._log.append_same(
                    conn,
                    await self._member_ids(conn, conversation_id, exclude),
                    event_at(None, reaction=change),
                )
            message = await self.message(conversation_id, message_id, conn, viewer_id=user_id)
        return Delivery(positions, message=message, created=bool(changed))

    async def mark_read(
        self, conversation_id: int, user_id: int, sequence: int, exclude: Collection[int] = ()
    ) -> tuple[Delivery, int]:
        """Moves the read mark forward (never back, never past the newest message)."""
        async with self._db.transaction() as conn:
            before = await conn.fetchval(
                f"SELECT last_read_sequence FROM {self._s}.members"
                " WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE",
                conversation_id,
                user_id,
            )
            row = await conn.fetchrow(
                f"""UPDATE {self._s}.members mb
                    SET last_read_sequence = greatest(mb.last_read_sequence,
                        least($3, (SELECT max_sequence FROM {self._s}.conversations c
                                   WHERE c.conversation_id = $1)))
                    WHERE conversation_id = $1 AND user_id = $2
                    RETURNING last_read_sequence""",
                conversation_id,
                user_id,
                sequence,
            )
            mark = int(row["last_read_sequence"])
            positions: dict[int, int] = {}
            if mark != before:
                receipt = chat_pb2.ReadReceipt(
                    conversation_id=conversation_id, user_id=user_id, sequence=mark
                )
                receipt.read_time.GetCurrentTime()
                positions = await self._log.append_same(
                    conn,
                    await self._member_ids(conn, conversation_id, exclude),
                    event_at(None, read_receipt=receipt),
                )
        return Delivery(positions), mark

    async def unread_messages(self, user_id: int) -> tuple[int, int]:
        row = await self._db.primary.fetchrow(
            f"""SELECT coalesce(sum(c.max_sequence - m.last_read_sequence), 0) AS messages,
                       count(*) FILTER (WHERE c.max_sequence > m.last_read_sequence)
                           AS conversations
                FROM {self._s}.members m JOIN {self._s}.conversations c USING (conversation_id)
                WHERE m.user_id = $1 AND m.state = $2""",
            user_id,
            ACCEPTED,
        )
        return int(row["messages"]), int(row["conversations"])

    async def append(self, events: dict[int, chat_pb2.ChatEvent]) -> dict[int, int]:
        """Appends ephemeral events (typing, presence) in a transaction of their own."""
        async with self._db.transaction() as conn:
            return await self._log.append(conn, events)


class _Duplicate(Exception):
    """A concurrent retry stored the message first: roll back and return that one."""

    def __init__(self, message: chat_pb2.Message) -> None:
        super().__init__("duplicate request id")
        self.message = message
