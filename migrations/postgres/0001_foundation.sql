-- Usage points, their series and access grants (PostgreSQL dialect; keep in step with
-- migrations/sqlite/0001_foundation.sql).
--
-- Timestamps are unix seconds (BIGINT), as in SQLite. Keys that the store orders by use
-- COLLATE "C": byte order, as SQLite sorts, whatever locale the cluster was created with.

CREATE TABLE usage_points (
    id                   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    source               TEXT    NOT NULL,
    device_type          TEXT    NOT NULL,
    identifier_authority TEXT    NOT NULL,
    identifier_kind      TEXT    NOT NULL,
    identifier_value     TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    online               BOOLEAN NOT NULL DEFAULT TRUE,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL
);

CREATE INDEX usage_points_source ON usage_points (source);

-- The integer id is what readings will reference: millions of rows keyed by a text pair would
-- cost far more space.
CREATE TABLE series (
    id                BIGSERIAL PRIMARY KEY,
    usage_point       TEXT COLLATE "C" NOT NULL REFERENCES usage_points (id),
    path              TEXT COLLATE "C" NOT NULL,
    title             TEXT    NOT NULL,
    measurement_name  TEXT    NOT NULL,
    direction         TEXT    NOT NULL,
    quantity          TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    unit              TEXT    NOT NULL,
    aggregation       TEXT    NOT NULL,
    sampling_interval TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (usage_point, path)
);

-- usage_point and series are patterns (`*` or an exact value), hence no foreign keys. Origin has
-- no CHECK so that both dialects accept the same rows; the store rejects unknown ones on read.
CREATE TABLE grants (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    series      TEXT    NOT NULL,
    valid_from  BIGINT,
    valid_until BIGINT,
    origin      TEXT    NOT NULL,
    purpose     TEXT,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX grants_subject ON grants (subject);
