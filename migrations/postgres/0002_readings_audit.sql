-- Readings and the audit log (PostgreSQL dialect; keep in step with
-- migrations/sqlite/0002_readings_audit.sql).

-- One value of a series at a time (unix seconds, UTC; interval values stamped at the interval
-- start). The primary key's B-tree serves range queries on one series (one index range scan)
-- and makes an upsert on (series, time) idempotent.
CREATE TABLE readings (
    series_id BIGINT           NOT NULL REFERENCES series (id),
    time      BIGINT           NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, time)
);

-- Every answered data request, append-only. Usage point and series are stored as requested
-- (text, no foreign key) so that an entry keeps its meaning whatever happens to the series later.
-- Grants are never deleted (revoked instead), so grant_id can reference them; NULL means access
-- as an admin. prev_hash and hash stay NULL until the hash chain is introduced.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    requester   TEXT   NOT NULL,
    usage_point TEXT   NOT NULL,
    series      TEXT   NOT NULL,
    range_start BIGINT NOT NULL,
    range_end   BIGINT NOT NULL,
    grant_id    BIGINT REFERENCES grants (id),
    command     TEXT   NOT NULL,
    records     BIGINT NOT NULL,
    prev_hash   TEXT,
    hash        TEXT
);
