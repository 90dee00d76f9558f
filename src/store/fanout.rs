//! The fan-out area: publications stored once, and for each subscription a cursor over its
//! series' publications that delivery moves once the link has written them.
//!
//! What a subscriber still has to receive is the publications of its series after its cursor,
//! so a publication costs the same whatever the number of subscribers, and a subscriber's backlog
//! costs nothing until it is delivered. Delivery claims subscriptions (a lease, as for the
//! outbox: instances sharing a PostgreSQL claim disjoint sets, a crashed claimer's subscriptions
//! come back when the lease passes), sends what is after their cursors, and advances them. The
//! publish transaction is here because its point is the publication: readings, the item and the
//! publication exist all together or not at all.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{AuditEntry, Batch, Item, Subscription};

/// Builds the item and notifications of the new readings of batch `index` (see
/// [`FanoutStore::publish_new`]).
pub type Prepare<'a> = dyn Fn(usize, &Batch) -> (Item, NewPublication) + Send + Sync + 'a;

/// A publication's notifications, serialised once (stored templates, see
/// [`Template::encode`](crate::stanzas::template::Template::encode)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPublication {
    /// The XEP-0060 notification, for `pubsub` subscriptions.
    pub pubsub: String,
    /// The generation-2 push messages, for `push` subscriptions.
    pub push: String,
}

/// A stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its number in its series (1, 2, …).
    pub seq: i64,
    pub published_at: i64,
    pub pubsub: String,
    pub push: String,
}

/// A subscription claimed for delivery, with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub subscription: Subscription,
    /// Its series, by id (for [`FanoutStore::publications`]).
    pub series_id: i64,
    /// The last publication delivered (or skipped by the bound).
    pub delivered: i64,
    /// The series' last publication when claimed.
    pub head: i64,
}

/// What the link reported for a claimed subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub subscription: i64,
    /// Publications up to this one are written (0: none more).
    pub seq: i64,
    /// The claim that sent them.
    pub claim: i64,
    /// The claim is over for this subscription (its last stanza was written or handed back).
    pub done: bool,
}

/// Publications and the cursors over them.
#[async_trait]
pub trait FanoutStore: Send + Sync {
    /// The publish transaction, all or nothing: writes the batch's readings (exactly as
    /// [`ReadingStore::insert_readings`](super::ReadingStore::insert_readings), same errors),
    /// the item if any (replacing an item with the same item id on its node, which makes it the
    /// newest; then keeping only `max_items` newest items of that node), and the publication if
    /// any, as the next of the batch's series, for every subscription of the series to receive.
    /// Returns the publication's seq.
    async fn publish(
        &self,
        batch: &Batch,
        item: Option<&Item>,
        publication: Option<&NewPublication>,
        max_items: usize,
    ) -> Result<Option<i64>, StoreError>;

    /// Publishes what is new in `batches`, in one transaction, all or nothing (HTTP ingest:
    /// many devices' packs, and retries of them, written together):
    /// - every batch's readings are written, as
    ///   [`ReadingStore::insert_readings`](super::ReadingStore::insert_readings) would in order
    ///   (same errors; a later batch's reading of a time wins);
    /// - a reading is *new* if the store held no reading of that value at that time before the
    ///   transaction and no earlier batch of the call had it. For each batch with new readings,
    ///   `prepare(index, new)` builds the item and notifications, which are published as
    ///   [`FanoutStore::publish`] does (the item on the batch's node, then the batch's series'
    ///   next publication); a batch without new readings publishes nothing;
    /// - `audit` is appended to the audit log.
    ///
    /// Statements are per group, not per batch. On PostgreSQL the readings' upsert locks their
    /// rows: two instances writing the same readings at once (a gateway's retry reaching both)
    /// take turns, and the second finds them stored, so they are published once. Returns how
    /// many readings of each batch were new.
    async fn publish_new(
        &self,
        batches: &[Batch],
        prepare: &Prepare<'_>,
        max_items: usize,
        audit: &[AuditEntry],
    ) -> Result<Vec<usize>, StoreError>;

    /// Claims at most `limit` subscriptions that are behind their series' last publication and
    /// claimed by no one (or whose claim expired at `now`), for `lease_secs`, under the id
    /// `claim`: until `now + lease_secs` no other claim returns them, whichever instance asks.
    /// A subscription neither advanced with `done` nor expired stays claimed.
    async fn claim_fanout(
        &self,
        now: i64,
        limit: usize,
        lease_secs: i64,
        claim: i64,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// The publications of series `series_id` after seq `after`, in order, at most `limit`.
    async fn publications(
        &self,
        series_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Publication>, StoreError>;

    /// Publication `seq` of the series of a subscription (a bounce of that notification), if
    /// both still exist.
    async fn publication_for(
        &self,
        subscription: i64,
        seq: i64,
    ) -> Result<Option<Publication>, StoreError>;

    /// Moves cursors forward (never back) to what the link wrote, and ends the claims that are
    /// `done` (if still held by that claim). Unknown subscriptions are ignored.
    async fn advance(&self, advances: &[Advance]) -> Result<(), StoreError>;

    /// Forgets the series no subscription is behind on any more (so claims need not look at
    /// them); returns how many.
    async fn settle_fanout(&self) -> Result<u64, StoreError>;

    /// Deletes the publications published before `before` that every subscription of their
    /// series has received; returns how many.
    async fn prune_publications(&self, before: i64) -> Result<u64, StoreError>;

    /// Ends every claim, of subscriptions and of outbox entries; returns how many. Only for a
    /// store no other instance uses (SQLite), at start: what a killed predecessor had claimed then
    /// goes at once instead of when its lease passes.
    async fn release_all_claims(&self) -> Result<u64, StoreError>;

    /// Notifications not yet delivered (each subscription's publications after its cursor), and
    /// when the oldest of them was published.
    async fn fanout_pending(&self) -> Result<(u64, Option<i64>), StoreError>;
}
