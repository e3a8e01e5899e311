-- AIP-155 for comments: a client-chosen request id (or the Idempotency-Key header)
-- makes a retried CreateComment return the first comment instead of a duplicate.
-- Unique per post and author, like posts' per author.
ALTER TABLE comments ADD COLUMN IF NOT EXISTS request_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS comments_request_id ON comments (post_id, author_id, request_id)
    WHERE request_id IS NOT NULL;
