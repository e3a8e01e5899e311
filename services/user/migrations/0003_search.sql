-- People search (issue 13): handle prefix + fuzzy display name, and a local,
-- event-fed projection of follows and blocks for visibility and ranking.
--
-- Runs inside the kit's migration transaction, so indexes here are plain
-- CREATE INDEX ... IF NOT EXISTS. On a large table an operator builds them
-- first with CREATE INDEX CONCURRENTLY under the same names (docs/search.md);
-- this file then finds them and only adds what is missing. Both indexes are on
-- expressions, so every write maintains them in its own transaction.

-- Accent and case folding: NFKD, combining marks dropped, lower-cased (no
-- `unaccent` in the embedded PostgreSQL). Same definition as post.search_fold.
CREATE OR REPLACE FUNCTION "user".search_fold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN lower(regexp_replace(normalize(t, NFKD),
        '[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]', '', 'g'));

-- pg_trgm's trigrams without pg_trgm: each folded word padded with two spaces
-- in front and one behind, every 3-character window, distinct.
CREATE OR REPLACE FUNCTION "user".trigrams(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(w.padded, i, 3)), '{}'::text[])
    FROM (SELECT '  ' || word || ' ' AS padded
          FROM regexp_split_to_table("user".search_fold(t), '[^[:alnum:]]+') AS word
          WHERE word <> '') AS w,
         generate_series(1, length(w.padded) - 2) AS i
$$;

CREATE INDEX IF NOT EXISTS users_name_trigrams ON users USING gin ("user".trigrams(display_name))
    WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS users_handle_prefix ON users (lower(handle) text_pattern_ops)
    WHERE deleted_at IS NULL;

-- Projection of the graph events (consumer group `user-search`). Each row
-- remembers the newest event applied to it, so redelivered and reordered
-- events change nothing; follower counts move only when a follow really flips.
CREATE TABLE IF NOT EXISTS search_follows (
    follower_id BIGINT NOT NULL,
    followee_id BIGINT NOT NULL,
    following   BOOLEAN NOT NULL,
    event_id    BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE TABLE IF NOT EXISTS search_follower_counts (
    user_id        BIGINT PRIMARY KEY,
    follower_count BIGINT NOT NULL DEFAULT 0
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
