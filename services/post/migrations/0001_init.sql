-- Posts and every interaction on them. Counters are denormalized and kept exact
-- in the same transaction as the interaction they count.
CREATE TABLE posts (
    post_id       BIGINT PRIMARY KEY,
    author_id     BIGINT NOT NULL,
    text          TEXT NOT NULL,
    media_ids     BIGINT[] NOT NULL DEFAULT '{}',
    visibility    SMALLINT NOT NULL,
    hashtags      TEXT[] NOT NULL DEFAULT '{}',
    mention_ids   BIGINT[] NOT NULL DEFAULT '{}',
    like_count    BIGINT NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    comment_count BIGINT NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    share_count   BIGINT NOT NULL DEFAULT 0 CHECK (share_count >= 0),
    request_id    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at    TIMESTAMPTZ
);
-- A user's timeline, newest first (keyset on post_id).
CREATE INDEX posts_by_author ON posts (author_id, post_id DESC) WHERE deleted_at IS NULL;
-- Idempotent creates: one post per (author, client request id).
CREATE UNIQUE INDEX posts_request_id ON posts (author_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX posts_hashtags ON posts USING gin (hashtags);

CREATE TABLE likes (
    post_id    BIGINT NOT NULL REFERENCES posts (post_id),
    user_id    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX likes_by_user ON likes (user_id, post_id);

CREATE TABLE shares (
    post_id    BIGINT NOT NULL REFERENCES posts (post_id),
    user_id    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX shares_by_user ON shares (user_id, post_id);

-- Saves are private to the saver; save_id orders "most recently saved first".
CREATE TABLE saves (
    user_id    BIGINT NOT NULL,
    post_id    BIGINT NOT NULL REFERENCES posts (post_id),
    save_id    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, post_id)
);
CREATE UNIQUE INDEX saves_by_user ON saves (user_id, save_id DESC);

CREATE TABLE comments (
    comment_id BIGINT PRIMARY KEY,
    post_id    BIGINT NOT NULL REFERENCES posts (post_id),
    author_id  BIGINT NOT NULL,
    text       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ
);
CREATE INDEX comments_by_post ON comments (post_id, comment_id) WHERE deleted_at IS NULL;

-- Live posts per author, for profile post counts.
CREATE TABLE author_counts (
    user_id    BIGINT PRIMARY KEY,
    post_count BIGINT NOT NULL DEFAULT 0 CHECK (post_count >= 0)
);
