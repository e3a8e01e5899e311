-- Week-one account features and concurrent refreshes (docs/errors.md, README "Sessions").
--
-- * refresh_tokens.replaced_by: the SHA-256 of the token a rotation issued in its
--   place. A rotated token presented again within the grace window (two tabs
--   refreshing at once) gets that same successor back while it is still the live
--   one; later it is reuse and revokes the session.
-- * password_resets: one row per mailed reset link; only the SHA-256 of the random
--   256-bit token is stored; single use, 1 h expiry, a newer link replaces older ones.
-- * sessions.last_refreshed_at: shown in the session list.
ALTER TABLE refresh_tokens ADD COLUMN IF NOT EXISTS replaced_by BYTEA;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_refreshed_at TIMESTAMPTZ;

CREATE TABLE IF NOT EXISTS password_resets (
    token_hash  BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (user_id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS password_resets_user ON password_resets (user_id);
