-- Open XEP-0050 command sessions (PostgreSQL dialect; keep in step with
-- migrations/sqlite/0007_adhoc_sessions.sql).
--
-- In the store rather than in one process, so that instances sharing the database serve any
-- stage of any session: the XMPP server may balance one session's stanzas between them. At
-- most `[limits] sessions_total` rows: an opening deletes the expired ones and counts under a
-- table lock (SHARE ROW EXCLUSIVE, taken by every opening) before it inserts.

-- id: the unguessable session id. owner: the full JID that opened it, the only one that may
-- continue it, at target (the JID addressed) on node. requester: the owner's bare JID, whose
-- resources share `sessions_per_requester`. state: what the next stage needs (JSON, see
-- src/xep/adhoc.rs), NULL while the form is awaited. touched_at: unix seconds of the last stage.
CREATE TABLE adhoc_sessions (
    id         TEXT   NOT NULL PRIMARY KEY,
    node       TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    requester  TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    state      TEXT,
    touched_at BIGINT NOT NULL
);

-- The per-requester count is one range; expiry is one range.
CREATE INDEX adhoc_sessions_requester ON adhoc_sessions (requester);
CREATE INDEX adhoc_sessions_touched ON adhoc_sessions (touched_at);
