-- Usage points, their series and access grants (SQLite dialect; keep in step with
-- migrations/postgres/0001_foundation.sql).
--
-- Timestamps are unix seconds. STRICT tables make SQLite reject values of the wrong type, as
-- PostgreSQL would, so both backends accept and return the same data.

CREATE TABLE usage_points (
    id                   TEXT    NOT NULL PRIMARY KEY,
    source               TEXT    NOT NULL,
    device_type          TEXT    NOT NULL,
    identifier_authority TEXT    NOT NULL,
    identifier_kind      TEXT    NOT NULL,
    identifier_value     TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    online               INTEGER NOT NULL DEFAULT 1 CHECK (online IN (0, 1)),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;

CREATE INDEX usage_points_source ON usage_points (source);

-- The integer id is what readings will reference: millions of rows keyed by a text pair would
-- cost far more space. AUTOINCREMENT so that an id is never reused for another series.
CREATE TABLE series (
    id                INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    usage_point       TEXT    NOT NULL REFERENCES usage_points (id),
    path              TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    measurement_name  TEXT    NOT NULL,
    direction         TEXT    NOT NULL,
    quantity          TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    unit              TEXT    NOT NULL,
    aggregation       TEXT    NOT NULL,
    sampling_interval TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (usage_point, path)
) STRICT;

-- usage_point and series are patterns (`*` or an exact value), hence no foreign keys. Origin has
-- no CHECK so that a later origin needs no table rebuild; the store rejects unknown ones on read.
-- AUTOINCREMENT because grant ids end up in the audit trail and must never designate another
-- grant.
CREATE TABLE grants (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    subject     TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    series      TEXT    NOT NULL,
    valid_from  INTEGER,
    valid_until INTEGER,
    origin      TEXT    NOT NULL,
    purpose     TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE INDEX grants_subject ON grants (subject);
