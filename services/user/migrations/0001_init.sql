-- Accounts, credentials, sessions and the profile activity log of the user service.
CREATE TABLE users (
    user_id        BIGINT PRIMARY KEY,
    handle         TEXT NOT NULL,
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    display_name   TEXT NOT NULL DEFAULT '',
    bio            TEXT NOT NULL DEFAULT '',
    avatar_url     TEXT NOT NULL DEFAULT '',
    is_private     BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at     TIMESTAMPTZ
);
-- Handles and emails stay reserved after a soft delete, so nobody can take over
-- a deleted account's identity.
CREATE UNIQUE INDEX users_handle_key ON users (lower(handle));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE sessions (
    session_id  BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (user_id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    revoke_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- One row per refresh token ever issued; only its SHA-256 is stored.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    session_id  BIGINT NOT NULL REFERENCES sessions (session_id),
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE activity_log (
    activity_id BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (user_id),
    action      TEXT NOT NULL,
    changes     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX activity_log_user ON activity_log (user_id, activity_id DESC);
