-- Who follows whom. edge_id is a snowflake minted when the follow was made: the
-- keyset for "newest first" pagination, stable while follows are added.
CREATE TABLE follows (
    follower_id BIGINT NOT NULL,
    followee_id BIGINT NOT NULL,
    edge_id     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id)
);
CREATE UNIQUE INDEX follows_by_followee ON follows (followee_id, edge_id DESC) INCLUDE (follower_id);
CREATE UNIQUE INDEX follows_by_follower ON follows (follower_id, edge_id DESC) INCLUDE (followee_id);

-- Pending requests to follow private accounts.
CREATE TABLE follow_requests (
    requester_id BIGINT NOT NULL,
    target_id    BIGINT NOT NULL,
    edge_id      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (requester_id, target_id)
);
CREATE UNIQUE INDEX follow_requests_by_target ON follow_requests (target_id, edge_id DESC);

CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_by_blocked ON blocks (blocked_id);

CREATE TABLE mutes (
    muter_id   BIGINT NOT NULL,
    muted_id   BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (muter_id, muted_id)
);

-- Denormalized, exact: changed in the same transaction as the follow it counts.
CREATE TABLE counts (
    user_id         BIGINT PRIMARY KEY,
    follower_count  BIGINT NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    following_count BIGINT NOT NULL DEFAULT 0 CHECK (following_count >= 0)
);
