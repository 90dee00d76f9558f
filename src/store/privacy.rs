//! The privacy area: what the data-subject rights need from the store. One-time export links
//! (`export` answers a large range with a link the holder downloads once) and erasure at consent
//! end (the readings of a usage point go once every consent on it has ended long enough ago).
//!
//! Both are claimed atomically in the store rather than in memory, so that several instances
//! sharing a PostgreSQL database serve a link once and erase an ended consent once.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{audit_command, AuditEntry, ANY};

/// A one-time export link as stored: the token itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// SHA-256 of the token, lower-case hex.
    pub token_hash: String,
    /// Bare JID of the holder who asked for it.
    pub requester: String,
    pub usage_point: String,
    /// A series path, or `*` for every series of the usage point.
    pub series: String,
    /// `[start, end)`, unix seconds.
    pub start: i64,
    pub end: i64,
    /// The holder's grant (consent or owner) the export was asked under.
    pub grant_id: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What claiming a link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportClaim {
    /// The link was live and is now used: serve this export.
    Claimed(Export),
    /// No such link (never made, or deleted a day after it expired).
    Unknown,
    /// Already downloaded (single use).
    Used,
    /// Expired before this download.
    Expired,
}

/// What one erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub usage_point: String,
    /// Readings deleted.
    pub readings: u64,
    /// Span of the deleted readings, `[start, end)` (`0, 0` when there were none).
    pub start: i64,
    pub end: i64,
    /// The grant of the consent that ended last (the audit entry names it).
    pub grant_id: Option<i64>,
}

impl Erasure {
    /// Its audit entry (`erasure`), by `actor` at `at`.
    pub fn audit_entry(&self, actor: &str, at: i64) -> AuditEntry {
        AuditEntry {
            requester: actor.to_owned(),
            usage_point: self.usage_point.clone(),
            series: ANY.to_owned(),
            start: self.start,
            end: self.end,
            grant_id: self.grant_id,
            command: audit_command::ERASURE.to_owned(),
            records: i64::try_from(self.readings).unwrap_or(i64::MAX),
            at,
        }
    }
}

/// Export links and erasure.
#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// Records an export link. Links expired for more than a day are deleted on the way.
    async fn add_export(&self, export: &Export) -> Result<(), StoreError>;

    /// Claims the link whose token hashes to `token_hash` at `now`: the first claim of a live
    /// link wins (one statement, whatever the number of instances), every later one is told
    /// [`ExportClaim::Used`].
    async fn claim_export(&self, token_hash: &str, now: i64) -> Result<ExportClaim, StoreError>;

    /// Usage points whose readings are due for erasure: with a consent not erased yet, and no
    /// consent that ended after `ended_before` or has not ended (revocation or expiry, whichever
    /// came first). Sorted.
    async fn erasable_usage_points(&self, ended_before: i64) -> Result<Vec<String>, StoreError>;

    /// Erases the readings of `usage_point` (every series), its published items and its
    /// fetched-days cache (a new consent fetches again), in one transaction, if it is still due
    /// (the same rule as [`PrivacyStore::erasable_usage_points`]), marking its ended consents
    /// erased at `now`. `None` when it was not due (any more): another instance did it, or a new
    /// consent came. Its audit entry ([`Erasure::audit_entry`], by `actor`) is appended in the
    /// same transaction.
    async fn erase_usage_point(
        &self,
        usage_point: &str,
        ended_before: i64,
        now: i64,
        actor: &str,
    ) -> Result<Option<Erasure>, StoreError>;
}
