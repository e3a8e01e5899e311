-- The attached media as the media service returned them at publish time (an
-- AttachMediaResponse): attached media is immutable, so reads need no call.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS media BYTEA;
