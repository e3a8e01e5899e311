-- Search (issue 13): full text over posts, hashtag prefixes, and a local,
-- event-fed projection of what visibility needs from other services.
--
-- Runs inside the kit's migration transaction, so indexes here are plain
-- CREATE INDEX ... IF NOT EXISTS. On a large table an operator builds them
-- first with CREATE INDEX CONCURRENTLY under the same names (docs/search.md);
-- this file then finds them and only adds what is missing.

-- Accent and case folding, one definition for documents and queries: NFKD,
-- combining marks dropped, lower-cased. (No `unaccent` in the embedded
-- PostgreSQL; this covers every Latin/Greek/Cyrillic diacritic and NFKD
-- compatibility forms such as ligatures and full-width letters.)
CREATE OR REPLACE FUNCTION post.search_fold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN lower(regexp_replace(normalize(t, NFKD),
        '[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]', '', 'g'));

-- The document: the `simple` configuration (no stemming, no stop words), see
-- docs/search.md. Written by the store in the INSERT that creates the post.
CREATE OR REPLACE FUNCTION post.search_document(t text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN to_tsvector('simple'::regconfig, post.search_fold(t));

ALTER TABLE posts ADD COLUMN IF NOT EXISTS search_tsv tsvector;
-- Back-fill (batched by an operator on a large table: docs/search.md).
UPDATE posts SET search_tsv = post.search_document(text) WHERE search_tsv IS NULL;
CREATE INDEX IF NOT EXISTS posts_search ON posts USING gin (search_tsv)
    WHERE deleted_at IS NULL;
-- Mentions filter (@handle).
CREATE INDEX IF NOT EXISTS posts_mentions ON posts USING gin (mention_ids)
    WHERE deleted_at IS NULL;

-- Hashtag prefix search: live PUBLIC posts per tag, kept in the post's own
-- create/delete transaction. "C" collation: the primary key serves LIKE 'ab%'.
CREATE TABLE IF NOT EXISTS tag_counts (
    tag        TEXT COLLATE "C" PRIMARY KEY,
    post_count BIGINT NOT NULL DEFAULT 0 CHECK (post_count >= 0)
);
INSERT INTO tag_counts (tag, post_count)
    SELECT t, count(*) FROM posts, unnest(hashtags) AS t
    WHERE deleted_at IS NULL AND visibility = 1
    GROUP BY t
ON CONFLICT (tag) DO NOTHING;
CREATE INDEX IF NOT EXISTS tag_counts_popular ON tag_counts (post_count DESC, tag);

-- What visibility needs, projected from the graph and user events (consumer
-- group `post-search`). Each row remembers the newest event applied to it, so
-- redelivered and reordered events change nothing.
CREATE TABLE IF NOT EXISTS search_follows (
    follower_id BIGINT NOT NULL,
    followee_id BIGINT NOT NULL,
    following   BOOLEAN NOT NULL,
    event_id    BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE TABLE IF NOT EXISTS search_blocks (
    blocker_id BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    blocking   BOOLEAN NOT NULL,
    event_id   BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX IF NOT EXISTS search_blocks_blocked ON search_blocks (blocked_id, blocker_id)
    WHERE blocking;
CREATE TABLE IF NOT EXISTS search_authors (
    user_id    BIGINT PRIMARY KEY,
    is_private BOOLEAN NOT NULL DEFAULT false,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    event_id   BIGINT NOT NULL
);
