-- Uploaded media, their renditions, and the content-addressed blobs behind both.
-- Blobs are keyed by SHA-256 (the same bytes are stored once); a blob row is
-- touched whenever an upload or a variant uses it, and the collector deletes
-- blobs no media references once that touch is older than a grace period.
CREATE TABLE blobs (
    sha256       TEXT PRIMARY KEY,
    size_bytes   BIGINT NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX blobs_last_used ON blobs (last_used_at);

CREATE TABLE media (
    media_id              BIGINT PRIMARY KEY,
    owner_id              BIGINT NOT NULL,
    -- Random path component of the media's URLs: unguessable, unlike media_id.
    token                 TEXT NOT NULL UNIQUE,
    media_type            SMALLINT NOT NULL,
    content_type          TEXT NOT NULL,
    declared_content_type TEXT NOT NULL DEFAULT '',
    filename              TEXT NOT NULL DEFAULT '',
    description           TEXT NOT NULL DEFAULT '',
    size_bytes            BIGINT NOT NULL,
    sha256                TEXT NOT NULL,
    state                 SMALLINT NOT NULL,
    failure_reason        TEXT NOT NULL DEFAULT '',
    width                 INT NOT NULL DEFAULT 0,
    height                INT NOT NULL DEFAULT 0,
    blurhash              TEXT NOT NULL DEFAULT '',
    duration_ms           BIGINT NOT NULL DEFAULT 0,
    -- Processing attempts started; past the limit the media ends FAILED.
    attempts              INT NOT NULL DEFAULT 0,
    attached_at           TIMESTAMPTZ,
    request_id            TEXT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Idempotent uploads: one media per (owner, client request id).
CREATE UNIQUE INDEX media_request_id ON media (owner_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX media_sha256 ON media (sha256);
-- The collector's scan of unattached uploads.
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;

CREATE TABLE variants (
    media_id     BIGINT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    kind         SMALLINT NOT NULL,
    width        INT NOT NULL,
    height       INT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (media_id, kind, content_type)
);
CREATE INDEX variants_sha256 ON variants (sha256);
