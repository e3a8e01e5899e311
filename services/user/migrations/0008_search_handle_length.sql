-- Typeahead on a short handle prefix ("seed_1" matches 10% of all accounts) must not
-- score every match. Handle-prefix quality falls with the handle's length, so the
-- best matches are the shortest handles: this index serves "matches of length L"
-- as one range scan, and search reads lengths in order until it has a page
-- (services/user/search.py). Partial: deleted accounts are never candidates.
CREATE INDEX IF NOT EXISTS users_handle_length_prefix
    ON users (length(lower(handle)), lower(handle) text_pattern_ops)
    WHERE deleted_at IS NULL;
