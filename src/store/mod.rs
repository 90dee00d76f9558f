//! Persistence: one [`Store`], the union of one trait per area, and two backends (SQLite
//! embedded, PostgreSQL shared).
//!
//! All SQL of the program lives under this module. Queries are checked at run time (`sqlx::query`,
//! not `query!`) so that building needs no database. Each backend has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), applied when the store is opened.
//!
//! The layout follows the areas, so that a change to one (say the outbox) is read and reviewed in
//! one place: each area's contract is a trait in a file of its own ([`UsagePointStore`],
//! [`ReadingStore`], [`SubscriptionStore`], [`OutboxStore`], [`GrantStore`], [`LeaseStore`],
//! [`ChangeStore`], [`ConsentStore`], [`UpstreamStore`], [`AuditStore`], [`SessionStore`], [`PrivacyStore`]); the
//! statements both backends speak alike are written once per area under `sql`;
//! `sqlite` and `postgres` hold only what each backend does its own way. Callers hold an
//! `Arc<dyn Store>` and call any area's methods on it without importing the area traits.

use std::sync::Arc;

mod audit;
mod changes;
mod common;
mod consents;
mod fanout;
mod grants;
mod leases;
mod outbox;
mod postgres;
mod privacy;
mod readings;
mod rows;
mod sessions;
mod sql;
mod sqlite;
mod subscriptions;
mod upstream;
mod usage_points;

pub(crate) use audit::AuditStore;
pub use audit::{AuditFilter, AuditRecord};
pub use changes::{Change, ChangeStore, CHANNEL};
pub(crate) use consents::ConsentStore;
pub use fanout::{Advance, Claimed, FanoutStore, NewPublication, Prepare, Publication};
pub use grants::ConfigGrantChanges;
pub(crate) use grants::GrantStore;
pub use leases::{Lease, LeaseStore};
pub use outbox::{NewOutboxEntry, OutboxStore};
pub use postgres::PostgresStore;
pub use privacy::{Erasure, Export, ExportClaim, PrivacyStore};
pub(crate) use readings::ReadingStore;
pub use sessions::{NewSession, Opened, SessionKey, SessionLimits, SessionStore, Taken};
pub use sqlite::{instance_lock, InstanceLock, SqliteStore};
pub use subscriptions::{SubscriptionCounts, SubscriptionStore};
pub(crate) use upstream::UpstreamStore;
pub(crate) use usage_points::UsagePointStore;

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

impl StoreError {
    /// A failure that passes by itself: the database is busy or locked (SQLite), restarting or
    /// unreachable (PostgreSQL), or a transaction lost a race. Trying again later makes sense;
    /// for every other error it does not.
    pub(crate) fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
            _ => false,
        }
    }
}

/// PostgreSQL SQLSTATEs (always five characters) and SQLite result codes (numbers of at most
/// four digits, the primary code in the low byte) that pass by themselves.
fn transient_code(code: &str) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    if code.len() < 5 {
        return code
            .parse::<i64>()
            .is_ok_and(|n| matches!(n & 0xff, SQLITE_BUSY | SQLITE_LOCKED));
    }
    // 08: connection exceptions; 57P01-57P03: shutdown, crash shutdown, cannot connect now;
    // 53300: too many connections; 40001, 40P01: serialization failure, deadlock.
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}

/// Everything the component keeps: the union of the areas. Implementations are cheap to share
/// (`Arc<dyn Store>`); a type that implements every area is a `Store` (blanket impl), so a
/// backend only implements the areas.
pub trait Store:
    UsagePointStore
    + ReadingStore
    + SubscriptionStore
    + OutboxStore
    + FanoutStore
    + GrantStore
    + LeaseStore
    + ChangeStore
    + ConsentStore
    + UpstreamStore
    + AuditStore
    + SessionStore
    + PrivacyStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: UsagePointStore
        + ReadingStore
        + SubscriptionStore
        + OutboxStore
        + FanoutStore
        + GrantStore
        + LeaseStore
        + ChangeStore
        + ConsentStore
        + UpstreamStore
        + AuditStore
        + SessionStore
        + PrivacyStore
        + Send
        + Sync
        + 'static
{
}

/// What waits to be delivered, outbox entries and publications after the cursors together:
/// how many notifications, and when the oldest was queued or published (health and metrics).
pub async fn undelivered(store: &dyn Store) -> Result<(u64, Option<i64>), StoreError> {
    let (fanout, fanout_oldest) = store.fanout_pending().await?;
    let outbox = store.pending_count().await?;
    let outbox_oldest = store.oldest_pending().await?;
    let oldest = match (fanout_oldest, outbox_oldest) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok((fanout.saturating_add(outbox), oldest))
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

#[cfg(test)]
mod transient_tests {
    use super::*;

    #[test]
    fn passing_failures_are_told_apart() {
        for code in [
            "5", "517", "261", "6", "262", "08006", "57P01", "57P03", "40001",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["19", "2067", "23505", "42P01", "1"] {
            assert!(!transient_code(code), "{code}");
        }
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(!StoreError::Conflict {
            id: "a".into(),
            owner: "b".into()
        }
        .is_transient());
    }
}
