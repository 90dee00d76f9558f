-- Subscriptions, PubSub items and the outbox of stanzas to deliver (SQLite dialect; keep in step
-- with migrations/postgres/0003_pubsub.sql).

-- One subscriber of one series, by XEP-0060 (`pubsub`) or by the generation-2 `subscribe`
-- command (`push`). The JID is kept exactly as given (bare or full): a full and a bare JID are
-- two subscriptions. The foreign key makes a subscription to an undeclared series impossible
-- (series are never deleted). The unique key leads with the node so that it also serves
-- "subscribers of a series"; the store orders by id afterwards. AUTOINCREMENT: outbox entries
-- keep a subscription's id after it is removed, so an id must never designate another one.
CREATE TABLE subscriptions (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    usage_point TEXT    NOT NULL,
    series      TEXT    NOT NULL,
    jid         TEXT    NOT NULL,
    subid       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (usage_point, series, kind, jid),
    FOREIGN KEY (usage_point, series) REFERENCES series (usage_point, path)
) STRICT;

-- "Subscriptions of alice@example.org": an exact match or a range scan of `bare/`…`bare0`
-- (BINARY collation is byte order).
CREATE INDEX subscriptions_jid ON subscriptions (jid);

-- Published items, one per live batch. The row id is the publication order: "newest first" is
-- descending id, and republishing an item id deletes and reinserts it, making it the newest.
CREATE TABLE items (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    series_id    INTEGER NOT NULL REFERENCES series (id),
    item_id      TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    UNIQUE (series_id, item_id)
) STRICT;

CREATE INDEX items_newest ON items (series_id, id);

-- Stanzas to deliver, written in the same transaction as what they announce. Pending while
-- sent_at is NULL; a delivery task claims pending rows by setting claimed_until (a lease: a
-- crashed claimer's rows become claimable again once it passes), then sets sent_at. Sent rows
-- stay until purged, for bounce handling. subscription_id is deliberately not a foreign key: an
-- entry outlives its subscription (a bounce may arrive after an unsubscribe), and subscription
-- ids are never reused. not_before is 0 for entries that may go at once.
CREATE TABLE outbox (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER,
    stanza          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER NOT NULL DEFAULT 0,
    claimed_until   INTEGER,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL
) STRICT;

-- Only pending rows, in delivery (id) order: claiming walks this small index, however many
-- sent rows wait for the purge. Dropping the pending entries of a subscription (rare) filters
-- it too; no index on subscription_id, which every publish would pay for.
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
