-- Subscriptions, PubSub items and the outbox of stanzas to deliver (PostgreSQL dialect; keep in
-- step with migrations/sqlite/0003_pubsub.sql).

-- One subscriber of one series, by XEP-0060 (`pubsub`) or by the generation-2 `subscribe`
-- command (`push`). The JID is kept exactly as given (bare or full): a full and a bare JID are
-- two subscriptions. The foreign key makes a subscription to an undeclared series impossible
-- (series are never deleted). The unique key leads with the node so that it also serves
-- "subscribers of a series"; the store orders by id afterwards. jid is COLLATE "C" so that the
-- range `bare/`…`bare0` is a byte range, as in SQLite.
CREATE TABLE subscriptions (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT             NOT NULL,
    usage_point TEXT COLLATE "C" NOT NULL,
    series      TEXT COLLATE "C" NOT NULL,
    jid         TEXT COLLATE "C" NOT NULL,
    subid       TEXT             NOT NULL,
    created_at  BIGINT           NOT NULL,
    UNIQUE (usage_point, series, kind, jid),
    FOREIGN KEY (usage_point, series) REFERENCES series (usage_point, path)
);

CREATE INDEX subscriptions_jid ON subscriptions (jid);

-- Published items, one per live batch. The id is the publication order: "newest first" is
-- descending id, and republishing an item id deletes and reinserts it, making it the newest.
CREATE TABLE items (
    id           BIGSERIAL PRIMARY KEY,
    series_id    BIGINT NOT NULL REFERENCES series (id),
    item_id      TEXT   NOT NULL,
    published_at BIGINT NOT NULL,
    payload      TEXT   NOT NULL,
    UNIQUE (series_id, item_id)
);

CREATE INDEX items_newest ON items (series_id, id);

-- Stanzas to deliver, written in the same transaction as what they announce. Pending while
-- sent_at is NULL; a delivery task claims pending rows (FOR UPDATE SKIP LOCKED, so instances
-- sharing the database claim disjoint rows) by setting claimed_until, a lease: a crashed
-- claimer's rows become claimable again once it passes. Sent rows stay until purged, for bounce
-- handling. subscription_id is deliberately not a foreign key: an entry outlives its
-- subscription (a bounce may arrive after an unsubscribe), and subscription ids are never
-- reused. not_before is 0 for entries that may go at once.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT,
    stanza          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      BIGINT  NOT NULL DEFAULT 0,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    created_at      BIGINT  NOT NULL
);

-- Only pending rows, in delivery (id) order: claiming walks this small index, however many
-- sent rows wait for the purge. Dropping the pending entries of a subscription (rare) filters
-- it too; no index on subscription_id, which every publish would pay for.
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
