//! The audit area: an append-only log of who read what under which grant, read back in pages
//! by id.

use async_trait::async_trait;

use super::StoreError;
use crate::model::AuditEntry;

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends to the audit log; returns the entry id (increasing).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Audit entries with `id > after_id`, oldest (smallest id) first, at most `limit`.
    async fn audit_entries(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
}
