//! Persistence: one [`Store`] trait, two backends (SQLite embedded, PostgreSQL shared).
//!
//! All SQL of the program lives under this module. Queries are checked at run time (`sqlx::query`,
//! not `query!`) so that building needs no database. Each backend has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), applied when the store is opened.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{AuditEntry, Batch, Grant, Reading, Series, UsagePoint};

mod common;
mod postgres;
mod rows;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend we know.
    #[error("unsupported store URL (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    /// A source declared a usage point already owned by another source.
    #[error("usage point {id} already belongs to source {owner}")]
    Conflict { id: String, owner: String },
    /// Readings were sent for a series nobody declared.
    #[error("unknown series {series} of usage point {usage_point}")]
    UnknownSeries { usage_point: String, series: String },
    /// A reading's value is NaN or infinite. SQLite cannot store NaN where PostgreSQL could, so
    /// both backends refuse such a batch whole, the same way.
    #[error("reading of {usage_point} {series} at {time} is not a finite number")]
    NonFiniteValue {
        usage_point: String,
        series: String,
        time: i64,
    },
    /// A row could not be mapped back to the model (corrupt or hand-edited data).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Everything the component keeps. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or updates a usage point and its series in one transaction. Series not listed are
    /// kept (they may hold history). Fails with [`StoreError::Conflict`] when the id belongs to
    /// another source.
    async fn declare_usage_point(
        &self,
        up: &UsagePoint,
        series: &[Series],
    ) -> Result<(), StoreError>;

    /// Marks a usage point online or offline; false when it does not exist.
    async fn set_online(&self, id: &str, online: bool) -> Result<bool, StoreError>;

    async fn usage_point(&self, id: &str) -> Result<Option<UsagePoint>, StoreError>;

    /// Usage points ordered by id, all of them or those of one source.
    async fn usage_points(&self, source: Option<&str>) -> Result<Vec<UsagePoint>, StoreError>;

    /// The series of a usage point, ordered by path.
    async fn series(&self, usage_point: &str) -> Result<Vec<Series>, StoreError>;

    /// Makes the unrevoked grants of origin `config` match these (stored as `config` whatever
    /// their origin says), in one transaction: a grant identical to an unrevoked config grant
    /// (same subject, usage point, series, validity and purpose) keeps that grant and its id, so
    /// that ids in the audit log stay meaningful across restarts; config grants no longer listed
    /// are revoked (kept for the audit trail); the others are inserted.
    async fn replace_config_grants(&self, grants: &[Grant]) -> Result<(), StoreError>;

    /// Adds a grant and returns its id.
    async fn add_grant(&self, grant: &Grant) -> Result<i64, StoreError>;

    /// Revokes a grant (kept for the audit trail); false when no such active grant exists.
    async fn revoke_grant(&self, id: i64) -> Result<bool, StoreError>;

    /// Unrevoked grants of one subject (bare JID), expired ones included: callers check validity
    /// at the time that matters to them.
    async fn grants_for(&self, subject: &str) -> Result<Vec<Grant>, StoreError>;

    /// Every unrevoked grant, ordered by id.
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// Inserts or replaces readings (idempotent on (series, time)) in one transaction. Within a
    /// batch, the last reading of a time wins. Returns how many readings were inserted or changed
    /// value: re-sending stored readings unchanged writes nothing and returns 0. `-0.0` is stored
    /// as `0.0`. Unknown series →
    /// [`StoreError::UnknownSeries`]; a NaN or infinite value → [`StoreError::NonFiniteValue`]
    /// (nothing of the batch is written).
    async fn insert_readings(&self, batch: &Batch) -> Result<usize, StoreError>;

    /// Readings of a series with `start <= time < end`, ascending by time, at most `limit`
    /// (`None` = all). An unknown series has no readings.
    async fn readings(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
        limit: Option<usize>,
    ) -> Result<Vec<Reading>, StoreError>;

    /// How many readings [`Store::readings`] would return without limit (for planning answer
    /// sizes).
    async fn count_readings(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
    ) -> Result<u64, StoreError>;

    /// The most recent reading of a series, if any.
    async fn last_reading(
        &self,
        usage_point: &str,
        series: &str,
    ) -> Result<Option<Reading>, StoreError>;

    /// Appends to the audit log; returns the entry id (increasing).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Audit entries with `id > after_id`, oldest (smallest id) first, at most `limit`.
    async fn audit_entries(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
}

/// Opens (creating if needed) and migrates the store named by `url`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
