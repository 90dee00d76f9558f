-- A bound on the notifications waiting per subscription (SQLite dialect; keep in step with
-- migrations/postgres/0005_outbox_bound.sql).

-- How many outbox entries publications have queued for this subscription so far. Each entry
-- gets the next number (outbox.seq), so "more than max_pending behind the newest" is a range of
-- the index below, found without counting what waits. Bumping it also locks the subscription for
-- the rest of the publish transaction (PostgreSQL), so two publishers never trim it at once.
ALTER TABLE subscriptions ADD COLUMN outbox_seq INTEGER NOT NULL DEFAULT 0;

-- seq: the entry's number among its subscription's (above); NULL for entries outside
-- publications, for notices, and for entries queued before this migration: never dropped.
-- missed: on a notice that notifications were dropped, how many; NULL on every other entry.
-- The count grows while the notice waits, and is written into its stanza when it is read.
ALTER TABLE outbox ADD COLUMN seq INTEGER;
ALTER TABLE outbox ADD COLUMN missed INTEGER;

-- Pending entries of one subscription in seq order: the oldest beyond the bound are one range,
-- and its waiting notice (seq NULL) another. Each publish pays one more index entry per
-- notification, the price of not scanning every pending row.
CREATE INDEX outbox_pending_subscription ON outbox (subscription_id, seq) WHERE sent_at IS NULL;
