//! The outbox area: single stanzas waiting to go to the XMPP server, claimed by the delivery task
//! of one instance at a time, kept after sending for bounce handling. Publications do not go
//! through it (see [`FanoutStore`](super::FanoutStore)); it holds what concerns one subscriber
//! at a time: the last item sent on subscribe, subscription-ended notices, and notifications
//! retried after a bounce.

use async_trait::async_trait;

use super::StoreError;
use crate::model::OutboxEntry;

/// A stanza to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEntry {
    /// The subscription the stanza is for. `None`: for no subscription (a subscription-ended
    /// notice, a message to an application): not deleted by [`OutboxStore::discard_pending`],
    /// and a bounce of it ends no subscription.
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

/// The outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues stanzas (last item after a subscribe, subscription-ended notices, retries), to go
    /// at once. Returns their ids, in order.
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
