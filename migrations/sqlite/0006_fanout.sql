-- Fan-out by cursor (SQLite dialect; keep in step with migrations/postgres/0006_fanout.sql).
--
-- A publication (one live batch) is stored once, with its notifications serialised once as
-- templates; each subscription keeps how far it has been delivered. What a subscriber still has
-- to receive is the publications of its series after its cursor: no row per subscriber and
-- publication, so publishing to 100,000 subscriptions writes as much as publishing to one.

-- How many publications the series has had; a publication's seq is the count after it. Bumped
-- in the publish transaction.
ALTER TABLE series ADD COLUMN published_seq INTEGER NOT NULL DEFAULT 0;

-- pubsub: the XEP-0060 notification, push: the generation-2 push messages, each a template
-- (holes for `to` and the stanza ids, see stanzas/template.rs). Kept while a subscription may
-- still need them (behind its cursor) and for bounce handling, then pruned.
CREATE TABLE publications (
    id           INTEGER NOT NULL PRIMARY KEY,
    series_id    INTEGER NOT NULL REFERENCES series (id),
    seq          INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    pubsub       TEXT    NOT NULL,
    push         TEXT    NOT NULL,
    UNIQUE (series_id, seq)
) STRICT;

-- series_id: the subscription's series by id (the claim joins on it). delivered_seq: the last
-- publication written to the server for it (or skipped by the bound); a new subscription
-- starts at its series' published_seq. claimed_until/claim_id: a delivery's lease, as on the
-- outbox (a crashed claimer's subscriptions become claimable again once it passes).
ALTER TABLE subscriptions ADD COLUMN series_id INTEGER REFERENCES series (id);
UPDATE subscriptions SET series_id = (SELECT r.id FROM series AS r
    WHERE r.usage_point = subscriptions.usage_point AND r.path = subscriptions.series);
ALTER TABLE subscriptions ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN claimed_until INTEGER;
ALTER TABLE subscriptions ADD COLUMN claim_id INTEGER;

-- The subscriptions behind on a series are one range of this index.
CREATE INDEX subscriptions_behind ON subscriptions (series_id, delivered_seq);

-- Series with publications some subscription may not have received yet, and the head
-- (published_seq) when that was last noted: the claim starts from these few rows instead of
-- every subscription. A row goes once no subscription is behind its head.
CREATE TABLE fanout (
    series_id INTEGER NOT NULL PRIMARY KEY,
    head      INTEGER NOT NULL
) STRICT;

-- The per-subscription numbering of outbox entries (migration 0005) bounded what waited per
-- subscription; outbox entries are now only the exceptions (last item on subscribe, notices,
-- retries) and the bound applies to the cursor. A notice still waiting gets its count now.
UPDATE outbox SET stanza = replace(stanza, '<?missed-count?>', CAST(missed AS TEXT))
    WHERE missed IS NOT NULL;
DROP INDEX outbox_pending_subscription;
ALTER TABLE outbox DROP COLUMN seq;
ALTER TABLE outbox DROP COLUMN missed;
ALTER TABLE subscriptions DROP COLUMN outbox_seq;
