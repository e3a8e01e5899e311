-- Post edits (UpdatePost): when the author last changed the text; NULL = never.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS edit_time timestamptz;
