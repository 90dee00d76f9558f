//! The leases area: which instance leads what (a source's task), when several instances share
//! one database.
//!
//! A lease is a row (name, holder, expiry). Its holder renews it well before it expires; when the
//! holder dies or loses the database, the lease expires and another instance takes it. Times are
//! the instances' unix clocks in milliseconds, so instances must keep their clocks in step (NTP):
//! a skew eats into the margin between the old holder giving up and the new one taking over
//! (`crate::lease`).

use async_trait::async_trait;

use super::StoreError;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Unix milliseconds.
    pub acquired_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// Leases of named work among instances.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes lease `name` for `holder` until `now + ttl_ms`, if it is free, expired or already
    /// `holder`'s (then it is renewed); true when `holder` holds it afterwards. One statement, so
    /// two instances trying at once cannot both win.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Gives lease `name` up, if `holder` still holds it (a graceful stop hands it over at once).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Forgets every lease, whoever held it: only for a store that one instance alone uses
    /// (SQLite, under its instance lock), at start, so that a process killed with its leases
    /// does not keep its restarted successor waiting for them to expire. Returns how many.
    async fn forget_leases(&self) -> Result<u64, StoreError>;

    /// Every lease, by name.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}
