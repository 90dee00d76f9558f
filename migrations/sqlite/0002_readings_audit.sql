-- Readings and the audit log (SQLite dialect; keep in step with
-- migrations/postgres/0002_readings_audit.sql).

-- One value of a series at a time (unix seconds, UTC; interval values stamped at the interval
-- start). WITHOUT ROWID makes the primary key the table itself: rows are stored in (series_id,
-- time) order, so a range query on one series is a single scan of contiguous pages, with no
-- second lookup per row and no extra index to maintain on insert. The key also makes an upsert
-- on (series, time) idempotent.
CREATE TABLE readings (
    series_id INTEGER NOT NULL REFERENCES series (id),
    time      INTEGER NOT NULL,
    value     REAL    NOT NULL,
    PRIMARY KEY (series_id, time)
) STRICT, WITHOUT ROWID;

-- Every answered data request, append-only. Usage point and series are stored as requested
-- (text, no foreign key) so that an entry keeps its meaning whatever happens to the series later.
-- Grants are never deleted (revoked instead), so grant_id can reference them; NULL means access
-- as an admin. prev_hash and hash stay NULL until the hash chain is introduced; AUTOINCREMENT so
-- that an id is never reused, since the chain will be ordered by id.
CREATE TABLE audit_log (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    requester   TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    series      TEXT    NOT NULL,
    range_start INTEGER NOT NULL,
    range_end   INTEGER NOT NULL,
    grant_id    INTEGER REFERENCES grants (id),
    command     TEXT    NOT NULL,
    records     INTEGER NOT NULL,
    prev_hash   TEXT,
    hash        TEXT
) STRICT;
