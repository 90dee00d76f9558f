//! The audit area: an append-only log of who read what under which grant, read back in pages
//! by id, each entry chained to the one before by its hash (`crate::model::audit_chain`).
//!
//! Appends take the log's lock (SQLite's write lock; on PostgreSQL a `SHARE ROW EXCLUSIVE`
//! lock on the table) to read the head and write the next entry with its hash, so one chain
//! stays in id order whatever the number of instances appending.

use async_trait::async_trait;

use super::StoreError;
use crate::model::audit_chain::{ChainedEntry, Checkpoint};
use crate::model::AuditEntry;

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends to the audit log, chained to the head; returns the entry id (increasing).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Appends several entries in order, in one transaction: delivery audits a whole claim at
    /// once, and one lock and commit per subscriber would cost more than the delivery itself.
    async fn append_audits(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;

    /// Chains entries written without a hash (before the chain existed), in id order, after
    /// the last hashed entry before them; returns how many. A no-op on a sealed log.
    async fn seal_audit(&self) -> Result<u64, StoreError>;

    /// Entries with their chain columns, `id > after_id`, in id order, at most `limit`.
    async fn audit_chain(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ChainedEntry>, StoreError>;

    /// Retention: deletes the entries written before `before` (the oldest ids, up to the last
    /// one older than that) and appends the [`Checkpoint`] that vouches for the cut, in one
    /// transaction; returns it (`None`: nothing that old).
    ///
    /// [`Checkpoint`]: crate::model::audit_chain::Checkpoint
    async fn prune_audit(&self, before: i64, now: i64) -> Result<Option<Checkpoint>, StoreError>;

    /// The last entry's id and hash (`None`: empty log, or a last entry without hash).
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;

    /// Audit entries with `id > after_id`, oldest (smallest id) first, at most `limit`.
    async fn audit_entries(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
}
