//! The subscriptions area: who receives what, both XEP-0060 subscriptions and generation-2
//! pushes, kept across restarts so that subscribers never have to subscribe again.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Subscription, SubscriptionKind};

/// The subscriptions of one requester, counted (see
/// [`SubscriptionStore::subscription_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// On every node of every usage point.
    pub total: u64,
    /// On the one series asked about.
    pub on_series: u64,
    /// The exact subscription asked about exists.
    pub exists: bool,
}

/// Subscriptions to series, of both kinds.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Adds a subscription, or returns the existing one for the same (kind, usage point, series,
    /// jid) unchanged: idempotent, the first subid stays. `jid` is kept exactly as given (a bare
    /// and a full JID are two subscriptions). An undeclared series →
    /// [`StoreError::UnknownSeries`].
    async fn subscribe(
        &self,
        kind: SubscriptionKind,
        usage_point: &str,
        series: &str,
        jid: &str,
        subid: &str,
    ) -> Result<Subscription, StoreError>;

    /// Removes the subscriptions of `jid` (exact string) of this kind on the usage point:
    /// on one series, or on all of them when `series` is `None`; only the one with this subid
    /// when `subid` is `Some`. Returns those removed, ordered by id. Their pending outbox
    /// entries stay (see [`OutboxStore::discard_pending`](super::OutboxStore::discard_pending)).
    async fn unsubscribe(
        &self,
        kind: SubscriptionKind,
        usage_point: &str,
        series: Option<&str>,
        jid: &str,
        subid: Option<&str>,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Removes one subscription by id (bounce, revoked grant); returns it if it existed. Its
    /// pending outbox entries stay (see
    /// [`OutboxStore::discard_pending`](super::OutboxStore::discard_pending)).
    async fn remove_subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError>;

    /// One subscription by id, if it exists.
    async fn subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError>;

    /// Subscriptions to a series, both kinds, ordered by id.
    async fn subscribers(
        &self,
        usage_point: &str,
        series: &str,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Subscriptions whose JID's bare part is `bare_jid` (the JID is `bare_jid` or starts with
    /// `bare_jid/`), optionally on one usage point only; ordered by id.
    async fn subscriptions_of(
        &self,
        bare_jid: &str,
        usage_point: Option<&str>,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// What the requester `bare_jid` (its full JIDs included) holds, both kinds: for its
    /// subscription limits, and whether (`kind`, `usage_point`, `series`, `jid`) already exists
    /// (re-subscribing is no new subscription). A count, not a list.
    async fn subscription_counts(
        &self,
        bare_jid: &str,
        kind: SubscriptionKind,
        usage_point: &str,
        series: &str,
        jid: &str,
    ) -> Result<SubscriptionCounts, StoreError>;

    /// Every subscription, ordered by id (for the periodic grant check).
    async fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;

    /// How many subscriptions there are, of both kinds.
    async fn count_subscriptions(&self) -> Result<u64, StoreError>;
}
