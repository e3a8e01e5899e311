-- People search, second step: what a name is searched by, stored with the row.
--
-- * name_words: every folded word of the display name, for typeahead prefix
--   tsqueries ('jo':* & 'sm':*) that stay selective however common a single
--   trigram is;
-- * name_trigrams: its trigrams, stored so that ranking does not recompute
--   them per candidate (the expression index of 0003 is replaced by one on
--   the column).
-- Generated columns: every write keeps them (and their GIN indexes) current in
-- its own transaction. Adding a stored column rewrites the table: on a large
-- table, see docs/search.md.
CREATE OR REPLACE FUNCTION "user".name_document(t text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN to_tsvector('simple'::regconfig, "user".search_fold(t));

ALTER TABLE users
    ADD COLUMN IF NOT EXISTS name_words tsvector
        GENERATED ALWAYS AS ("user".name_document(display_name)) STORED,
    ADD COLUMN IF NOT EXISTS name_trigrams text[]
        GENERATED ALWAYS AS ("user".trigrams(display_name)) STORED;

DROP INDEX IF EXISTS users_name_trigrams;
CREATE INDEX IF NOT EXISTS users_name_trigram_set ON users USING gin (name_trigrams)
    WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS users_name_words ON users USING gin (name_words)
    WHERE deleted_at IS NULL;
