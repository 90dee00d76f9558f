//! Persistence: one [`Store`] trait, two backends (SQLite embedded, PostgreSQL shared).
//!
//! All SQL of the program lives under this module. Queries are checked at run time (`sqlx::query`,
//! not `query!`) so that building needs no database. Each backend has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), applied when the store is opened.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{Grant, Series, UsagePoint};

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

    /// Replaces every grant of origin `config` with these, in one transaction.
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
