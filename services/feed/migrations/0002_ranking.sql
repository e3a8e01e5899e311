-- The interaction log the ranker learns from and reads at serve time, fed by
-- post events (consumer group `feed-log`, each event once via claim_event).
-- Append-only: an unlike is a row of its own (kind 2), not a delete.
CREATE TABLE interactions (
    event_id    BIGINT PRIMARY KEY,
    viewer_id   BIGINT NOT NULL,
    post_id     BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    kind        SMALLINT NOT NULL,  -- 1 like, 2 unlike, 3 share, 4 unshare, 5 comment
    occurred_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX interactions_by_viewer ON interactions (viewer_id, occurred_at DESC);
CREATE INDEX interactions_by_post ON interactions (post_id, occurred_at DESC);
CREATE INDEX interactions_by_viewer_author ON interactions (viewer_id, author_id);

-- What PostCreated said about each post: visibility (out-of-network candidates
-- are PUBLIC posts only) and hashtags (content affinity). `deleted` from PostDeleted.
CREATE TABLE posts (
    post_id    BIGINT PRIMARY KEY,
    author_id  BIGINT NOT NULL,
    visibility SMALLINT NOT NULL,
    hashtags   TEXT[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX posts_recent_public ON posts (created_at DESC) WHERE visibility = 1 AND NOT deleted;
CREATE INDEX posts_by_tag ON posts USING gin (hashtags);
CREATE INDEX posts_by_author ON posts (author_id, created_at DESC);

-- Where a served item came from (in-network, co-engagement, affinity, trending),
-- from its tracking token.
ALTER TABLE impressions ADD COLUMN source TEXT NOT NULL DEFAULT '';
CREATE INDEX impressions_by_viewer_post ON impressions (viewer_id, post_id);

-- Experiment exposure: one row per served RANKED page and experiment.
CREATE TABLE exposures (
    viewer_id  BIGINT NOT NULL,
    experiment TEXT NOT NULL,
    arm        TEXT NOT NULL,
    served_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    item_count INT NOT NULL
);
CREATE INDEX exposures_by_experiment ON exposures (experiment, arm, viewer_id);
