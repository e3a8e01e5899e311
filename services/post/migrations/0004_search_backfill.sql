-- Back-fills of the search copies (docs/search.md, "Back-fill"): one row per
-- completed run, dated by the snapshot event id its rows were written with.
-- Empty means "never back-filled" (or asked for again by `socialmesh seed`):
-- the service back-fills in the background at start.
CREATE TABLE IF NOT EXISTS search_backfill (
    snapshot_event_id BIGINT PRIMARY KEY,
    finished_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    follows           BIGINT NOT NULL DEFAULT 0,
    blocks            BIGINT NOT NULL DEFAULT 0,
    accounts          BIGINT NOT NULL DEFAULT 0,
    retired           BIGINT NOT NULL DEFAULT 0
);
