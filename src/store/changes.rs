//! The changes area: what other instances sharing the database changed, as it happens.
//!
//! Instances keep nothing of grants, subscriptions or publications in memory; they read them
//! from the store. What they do wait on is a wake-up: delivery sleeps until there is work (or a
//! one-second poll), subscriptions are checked against grants when access changed (or every
//! minute). On PostgreSQL, triggers (migration 0008) `NOTIFY` on channel [`CHANNEL`] when a
//! statement writes grants or consents (`access`), or adds publications or outbox entries
//! (`work`), whoever wrote them: this instance, another one, or the `admin` command line; each
//! instance `LISTEN`s and wakes the right task at once. The polls stay as the safety net (a
//! notification missed while the listening connection was down is followed by
//! [`Change::Resync`]). SQLite has one instance, whose tasks wake each other in memory: no feed.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::StoreError;

/// The PostgreSQL channel the triggers notify.
pub const CHANNEL: &str = "quoalise_changes";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Grants or consents were written: check subscriptions against them.
    Access,
    /// Publications or outbox entries were added: there is something to deliver.
    Work,
    /// The feed was interrupted (its connection lost and made again): anything may have changed.
    Resync,
}

impl Change {
    /// The change a notification's payload names (`None`: not one of ours).
    pub fn from_payload(payload: &str) -> Option<Change> {
        match payload {
            "access" => Some(Change::Access),
            "work" => Some(Change::Work),
            _ => None,
        }
    }
}

/// A feed of changes made by anyone sharing the database.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Starts listening; `None` for a backend that has no other writers to hear (SQLite). The
    /// feed lives until its receiver is dropped, and reconnects by itself.
    async fn listen(&self) -> Result<Option<mpsc::Receiver<Change>>, StoreError>;
}
