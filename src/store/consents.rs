//! The consents area (Enedis): the consent pages applications ask for, the single-use states of
//! the links handed out on them, and the consents customers gave, each with the grant it opens.
//!
//! The calls made upstream under these consents and what they fetched are another area
//! ([`UpstreamStore`](super::UpstreamStore)): they are kept for rate limits and caching, not for
//! access.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Consent, ConsentRequest, Grant, OAuthState};

/// Consent pages, link states and consents.
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Records a consent page. Ids are unguessable, so a clash is a database error.
    async fn add_consent_request(&self, request: &ConsentRequest) -> Result<(), StoreError>;

    async fn consent_request(&self, id: &str) -> Result<Option<ConsentRequest>, StoreError>;

    /// How many consent pages an application has: bounds what one requester can make us keep.
    async fn count_consent_requests(&self, app_jid: &str) -> Result<u64, StoreError>;

    /// Stores the state of a consent link just handed out. Expired states go on the way, and
    /// of the states of its consent page only the `keep` newest stay (this one included): a page
    /// reloaded in a loop cannot grow the table.
    async fn add_oauth_state(&self, state: &OAuthState, keep: usize) -> Result<(), StoreError>;

    /// Removes and returns a state still valid at `now`: a state works once. Expired states are
    /// deleted on the way.
    async fn take_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Option<OAuthState>, StoreError>;

    /// Records a consent and its grant in one transaction; returns (consent id, grant id).
    async fn record_consent(
        &self,
        consent: &Consent,
        grant: &Grant,
    ) -> Result<(i64, i64), StoreError>;

    /// How many consents, of every source, are in force at `now` (for `/metrics`).
    async fn count_active_consents(&self, now: i64) -> Result<u64, StoreError>;

    /// Consents of a source not revoked and not expired at `now`, oldest first.
    async fn active_consents(&self, source: &str, now: i64) -> Result<Vec<Consent>, StoreError>;

    /// Revokes the consents on a usage point and their grants (the provider said the customer
    /// withdrew it); returns the revoked consents.
    async fn revoke_consents(&self, usage_point: &str) -> Result<Vec<Consent>, StoreError>;
}
