-- What clients displayed (RecordImpressions). impression_id is the client's
-- idempotency key; the tracking fields come from the signed tracking token.
CREATE TABLE impressions (
    viewer_id     BIGINT NOT NULL,
    impression_id TEXT NOT NULL,
    post_id       BIGINT NOT NULL,
    surface       SMALLINT NOT NULL,
    position      INT NOT NULL,
    served_kind   SMALLINT NOT NULL,
    served_rank   INT NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    arm           TEXT NOT NULL,
    dwell_ms      BIGINT NOT NULL,
    display_time  TIMESTAMPTZ,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (viewer_id, impression_id)
);
CREATE INDEX impressions_by_post ON impressions (post_id);

-- What users told us (SubmitFeedback): read on every feed page.
CREATE TABLE feedback (
    viewer_id  BIGINT NOT NULL,
    post_id    BIGINT NOT NULL,
    author_id  BIGINT NOT NULL,
    kind       SMALLINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (viewer_id, post_id, kind)
);
