-- The consent chain and the upstream cache of the enedis source (SQLite dialect; keep in step
-- with migrations/postgres/0004_consent.sql).

-- Consent pages asked for by applications (`get_authorize_uri`). The id is the unguessable
-- `id` parameter of `/authorize`.
CREATE TABLE consent_requests (
    id           TEXT    NOT NULL PRIMARY KEY,
    source       TEXT    NOT NULL,
    app_jid      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    logo_url     TEXT,
    description  TEXT    NOT NULL,
    redirect_uri TEXT,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX consent_requests_app ON consent_requests (app_jid);

-- OAuth states in flight: single use (deleted when the callback takes them), short-lived.
CREATE TABLE oauth_states (
    state        TEXT    NOT NULL PRIMARY KEY,
    request_id   TEXT    NOT NULL REFERENCES consent_requests (id),
    duration     TEXT    NOT NULL,
    app_state    TEXT,
    redirect_uri TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

-- Consents given by customers; the grant recorded with each is in grants.
CREATE TABLE consents (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    app_jid     TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    reference   TEXT    NOT NULL,
    begins_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    grant_id    INTEGER REFERENCES grants (id),
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX consents_usage_point ON consents (usage_point);

-- Every call to an upstream API, written before the call (status NULL) and completed after.
CREATE TABLE upstream_calls (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    api         TEXT    NOT NULL,
    usage_point TEXT,
    range_start TEXT,
    range_end   TEXT,
    consent_id  INTEGER,
    requester   TEXT,
    started_at  INTEGER NOT NULL,
    status      TEXT,
    code        TEXT,
    finished_at INTEGER
) STRICT;

CREATE INDEX upstream_calls_started ON upstream_calls (source, started_at);

-- Days already fetched per API: the store is the cache, a fetched day is never paid twice.
CREATE TABLE fetched_days (
    usage_point TEXT    NOT NULL,
    api         TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    fetched_at  INTEGER NOT NULL,
    PRIMARY KEY (usage_point, api, day)
) STRICT, WITHOUT ROWID;
