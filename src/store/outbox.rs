//! The outbox area: stanzas waiting to go to the XMPP server, queued in the same transaction as
//! what they announce, claimed by the delivery task of one instance at a time, kept after sending
//! for bounce handling, and bounded per subscription while nothing is delivered.
//!
//! The publish transaction is here because its point is the outbox: readings, the item and the
//! notifications exist all together or not at all.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Batch, Item, OutboxEntry};

/// Where the text of a notice of dropped notifications says how many: the store writes the count
/// there each time the entry is read (claimed, looked up), since further drops raise it while
/// the notice waits. It cannot occur in escaped text (`<` is always escaped there), nor in the
/// markup the component writes.
pub const MISSED_COUNT: &str = "<?missed-count?>";

/// The text of a notice of dropped notifications for a subscription (its id), given the time
/// the oldest dropped entry was queued; `None` queues no notice.
pub type NoticeText<'a> = dyn Fn(i64, i64) -> Option<String> + Sync + 'a;

/// The bounds of a publication (see [`OutboxStore::publish`]).
pub struct PublishLimits<'a> {
    /// Items kept per node.
    pub max_items: usize,
    /// Notifications waiting per subscription at most.
    pub max_pending: usize,
    /// The text of a new notice of dropped notifications.
    pub notice: &'a NoticeText<'a>,
}

/// What a publication queued and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Outbox ids of the stanzas given, in their order.
    pub ids: Vec<i64>,
    /// Waiting notifications deleted by the bound.
    pub dropped: u64,
}

/// A stanza to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEntry {
    /// The subscription the stanza is for. `None`: for no subscription (a subscription-ended
    /// notice, a message to an application): never dropped by the bound of
    /// [`OutboxStore::publish`], not deleted by [`OutboxStore::discard_pending`], and a bounce
    /// of it ends no subscription.
    pub subscription: Option<i64>,
    /// Serialised stanza.
    pub stanza: String,
}

impl NewOutboxEntry {
    /// A stanza for subscription `id`.
    pub(crate) fn for_subscription(id: i64, stanza: String) -> Self {
        NewOutboxEntry {
            subscription: Some(id),
            stanza,
        }
    }

    /// A stanza for no subscription.
    pub(crate) fn unattached(stanza: String) -> Self {
        NewOutboxEntry {
            subscription: None,
            stanza,
        }
    }
}

/// The outbox and the publish transaction that fills it.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The publish transaction, all or nothing: writes the batch's readings (exactly as
    /// [`ReadingStore::insert_readings`](super::ReadingStore::insert_readings), same errors),
    /// the item if any (replacing an item with the same item id on its node, which makes it the
    /// newest; then keeping only `limits.max_items` newest items of that node), and queues the
    /// stanzas, each with the subscription it is for, to go at once.
    ///
    /// Then the bound: each subscription given here keeps at most `limits.max_pending` waiting
    /// notifications, its newest; older ones still unsent are deleted (the readings and items
    /// stay), except those a delivery has claimed and not yet released (already on their way).
    /// A subscription that lost some gets one notice, never dropped: its waiting notice, if one
    /// is neither claimed nor sent, counts them too; otherwise a new one is queued, the text
    /// `limits.notice` gives for (subscription, time the oldest dropped entry was queued), with
    /// [`MISSED_COUNT`] where the count goes. Returns the outbox ids, in the order of `outbox`,
    /// and how many entries were dropped.
    async fn publish(
        &self,
        batch: &Batch,
        item: Option<&Item>,
        outbox: &[NewOutboxEntry],
        limits: &PublishLimits<'_>,
    ) -> Result<Published, StoreError>;

    /// Queues stanzas outside a publish (last item after a subscribe, subscription-ended
    /// notices), to go at once. Returns their ids, in order.
    async fn enqueue(&self, outbox: &[NewOutboxEntry]) -> Result<Vec<i64>, StoreError>;

    /// Claims pending entries due at `now` (`not_before <= now`, unclaimed or whose claim has
    /// expired), oldest (smallest id) first, at most `limit`, for `lease_secs`: until
    /// `now + lease_secs` no other claim returns them, whichever instance asks (instances sharing
    /// a PostgreSQL get disjoint sets). Claimed entries neither marked sent nor put back are
    /// claimable again once the lease passes (crash: another instance or the restart resends).
    async fn claim_outbox(
        &self,
        now: i64,
        limit: usize,
        lease_secs: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Marks entries as written to the XMPP server at `at`; they are kept (for bounce handling)
    /// until [`OutboxStore::purge_sent`]. Entries already sent keep their first time; unknown
    /// ids are ignored.
    async fn mark_sent(&self, ids: &[i64], at: i64) -> Result<(), StoreError>;

    /// Makes claimed-but-unsent entries pending again at once (the link dropped before writing
    /// them), without counting an attempt: their claim ends, `attempts` and `not_before` stay.
    /// Unknown, unclaimed and already-sent ids are ignored. Returns how many were released.
    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// Puts an entry (pending, claimed or sent) back as pending, unclaimed, with attempts + 1 and
    /// this `not_before` (retry after a `wait` or `auth` bounce); false if unknown.
    async fn retry_later(&self, id: i64, not_before: i64) -> Result<bool, StoreError>;

    /// One entry by id, pending or sent (bounce handling).
    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError>;

    /// Deletes the pending (unsent) entries of a subscription, claimed ones and notices included,
    /// and returns how many: for a subscription that ended because access ended, so that readings
    /// queued before do not go out after. Entries queued afterwards are not affected.
    async fn discard_pending(&self, subscription: i64) -> Result<u64, StoreError>;

    /// Deletes sent entries with `sent_at < before`; returns how many.
    async fn purge_sent(&self, before: i64) -> Result<u64, StoreError>;

    /// Number of pending (unsent) entries, claimed or not, due or not.
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// When the oldest pending entry on its first attempt was queued (unix seconds), if any.
    async fn oldest_pending(&self) -> Result<Option<i64>, StoreError>;
}
