-- Email verification (security review M4, second half): proof that the owner of an
-- account reads the mailbox its `email` names.
--
-- * users.email_verified_at: when the current address was verified (NULL: not yet).
--   Existing accounts start unverified; unverified accounts keep working (README).
-- * email_verifications: one row per mailed link. Only the SHA-256 of the random
--   256-bit token is stored (like refresh tokens), with the address it was sent to:
--   a token verifies that address only, never one the account names later. Single
--   use (used_at), 24 h expiry, and a newer link for the account replaces older ones.
-- * A verified address belongs to one live account: the partial unique index that
--   0002 promised. Unverified accounts may still share an address (registration
--   must not reveal whether it is in use).
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified_at TIMESTAMPTZ;

CREATE TABLE IF NOT EXISTS email_verifications (
    token_hash  BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (user_id),
    email       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS email_verifications_user ON email_verifications (user_id);

CREATE UNIQUE INDEX IF NOT EXISTS users_verified_email_key ON users (lower(email))
    WHERE email_verified_at IS NOT NULL AND deleted_at IS NULL;
