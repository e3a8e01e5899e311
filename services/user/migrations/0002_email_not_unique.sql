-- Registration must not reveal whether an email is registered (security review M4),
-- so an address no longer has to be unique: a second account may name it, and the
-- owner of the mailbox is told out of band. Nothing signs in or recovers by email yet;
-- once email verification exists, uniqueness belongs to *verified* addresses only
-- (a partial unique index), so nobody can squat someone else's address either.
DROP INDEX users_email_key;
CREATE INDEX users_email ON users (lower(email));
