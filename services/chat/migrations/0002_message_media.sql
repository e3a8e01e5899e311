-- The attached media as the media service returned them when the message was sent
-- (an AttachMediaResponse): attached media is immutable, so reads need no call.
ALTER TABLE messages ADD COLUMN media BYTEA;
