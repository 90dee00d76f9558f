-- Data-subject rights (SQLite dialect; keep in step with migrations/postgres/0010_privacy.sql):
-- erasure at consent end and one-time export links.

-- When the readings of a consent's usage point were erased after the consent ended (NULL: not
-- yet). The erasure task claims ended consents by setting it, so that two instances, or a
-- restart, never erase (and audit) the same end twice; a later consent on the same usage point
-- has its own NULL and is erased in its turn when it ends.
ALTER TABLE consents ADD COLUMN erased_at INTEGER;

-- One-time download links of `export`. Only the SHA-256 of the token is kept (hex): whoever
-- reads the database cannot download, and any instance can serve the link. claimed_at is set
-- once, atomically, by the download that uses it; rows are deleted a day after they expire
-- (until then a late click is told the link expired rather than that it never existed).
CREATE TABLE exports (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    requester   TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    series      TEXT    NOT NULL,
    range_start INTEGER NOT NULL,
    range_end   INTEGER NOT NULL,
    grant_id    INTEGER REFERENCES grants (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    claimed_at  INTEGER
) STRICT;

CREATE INDEX exports_expiry ON exports (expires_at);
