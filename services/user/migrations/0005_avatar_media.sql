-- Avatars are uploads of the account's own (media service), never arbitrary URLs:
-- avatar_url is derived from the media's 320 px variant when avatar_media_id is set.
ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar_media_id BIGINT NOT NULL DEFAULT 0;
