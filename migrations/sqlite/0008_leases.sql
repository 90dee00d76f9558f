-- Leases: which instance leads what (a source's task) when several share one database.
-- Times are unix milliseconds; a holder renews well before expires_at (src/lease.rs).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
