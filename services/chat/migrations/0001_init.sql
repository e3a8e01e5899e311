-- Conversations. A direct conversation has direct_key = 'low:high' (its two
-- members), unique, so a pair never gets a second one. create_request_id makes
-- a retried group create return the first group.
CREATE TABLE conversations (
    conversation_id   BIGINT PRIMARY KEY,
    kind              SMALLINT NOT NULL,
    title             TEXT NOT NULL DEFAULT '',
    creator_id        BIGINT NOT NULL,
    direct_key        TEXT UNIQUE,
    create_request_id TEXT,
    -- Sequence of the newest message; the next message takes max_sequence + 1
    -- under this row's lock (never a PostgreSQL sequence: those skip values on
    -- abort and commit out of order).
    max_sequence      BIGINT NOT NULL DEFAULT 0,
    create_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (creator_id, create_request_id)
);

CREATE TABLE members (
    conversation_id    BIGINT NOT NULL REFERENCES conversations ON DELETE CASCADE,
    user_id            BIGINT NOT NULL,
    role               SMALLINT NOT NULL,
    state              SMALLINT NOT NULL,
    join_time          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_read_sequence BIGINT NOT NULL DEFAULT 0,
    -- Copied from conversations.update_time so an inbox page is one index scan.
    activity_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_inbox ON members (user_id, state, activity_time DESC, conversation_id DESC);

CREATE TABLE messages (
    conversation_id     BIGINT NOT NULL REFERENCES conversations ON DELETE CASCADE,
    sequence            BIGINT NOT NULL,
    message_id          BIGINT NOT NULL UNIQUE,
    sender_id           BIGINT NOT NULL,
    text                TEXT NOT NULL,
    media_ids           BIGINT[] NOT NULL DEFAULT '{}',
    reply_to_message_id BIGINT NOT NULL DEFAULT 0,
    request_id          TEXT,
    create_time         TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time         TIMESTAMPTZ,
    delete_time         TIMESTAMPTZ,
    PRIMARY KEY (conversation_id, sequence),
    UNIQUE (conversation_id, sender_id, request_id)
);

CREATE TABLE reactions (
    message_id  BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    emoji       TEXT NOT NULL,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);

-- The per-user event log. stream_heads.last_position is taken and bumped
-- under its row lock in the writer's transaction, so one user's positions
-- commit in order: a reader that saw position N never later finds a
-- smaller one appearing. floor_position: everything at or below it was pruned.
CREATE TABLE stream_heads (
    user_id        BIGINT PRIMARY KEY,
    last_position  BIGINT NOT NULL DEFAULT 0,
    floor_position BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE user_events (
    user_id     BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    event       BYTEA NOT NULL,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, position)
);
CREATE INDEX user_events_by_age ON user_events (create_time);

-- Notification groups: one row per (user, group_key); new activity moves
-- notification_id forward (so it sorts first and reads as unread again).
CREATE TABLE notifications (
    notification_id  BIGINT PRIMARY KEY,
    user_id          BIGINT NOT NULL,
    kind             SMALLINT NOT NULL,
    group_key        TEXT NOT NULL,
    post_id          BIGINT NOT NULL DEFAULT 0,
    comment_id       BIGINT NOT NULL DEFAULT 0,
    snippet          TEXT NOT NULL DEFAULT '',
    sample_actor_ids BIGINT[] NOT NULL,
    actor_count      BIGINT NOT NULL DEFAULT 1,
    create_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    latest_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    dismissed        BOOLEAN NOT NULL DEFAULT false,
    UNIQUE (user_id, group_key)
);
CREATE INDEX notifications_by_user ON notifications (user_id, notification_id DESC);

-- Distinct actors per group (actor_count counts people, not events).
CREATE TABLE notification_actors (
    user_id   BIGINT NOT NULL,
    group_key TEXT NOT NULL,
    actor_id  BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_key, actor_id)
);

CREATE TABLE notification_markers (
    user_id      BIGINT PRIMARY KEY,
    last_read_id BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE push_endpoints (
    push_endpoint_id BIGINT PRIMARY KEY,
    user_id          BIGINT NOT NULL,
    url              TEXT NOT NULL,
    create_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, url)
);

-- Pushes waiting for delivery, written in the same transaction as what
-- caused them; a worker sends them with retries and backoff.
CREATE TABLE push_deliveries (
    delivery_id      BIGINT PRIMARY KEY,
    push_endpoint_id BIGINT NOT NULL REFERENCES push_endpoints ON DELETE CASCADE,
    payload          BYTEA NOT NULL,
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt);
