//! Persistence: one [`Store`] trait, two backends (SQLite embedded, PostgreSQL shared).
//!
//! All SQL of the program lives under this module. Queries are checked at run time (`sqlx::query`,
//! not `query!`) so that building needs no database. Each backend has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), applied when the store is opened. The
//! statements both backends speak alike are written once, in `shared`; `sqlite` and `postgres`
//! hold only what each does its own way.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{
    AuditEntry, Batch, Consent, ConsentRequest, Grant, Item, OAuthState, OutboxEntry, Reading,
    Series, Subscription, SubscriptionKind, UpstreamCall, UsagePoint,
};

mod common;
mod postgres;
mod rows;
mod shared;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where the text of a notice of dropped notifications says how many: the store writes the count
/// there each time the entry is read (claimed, looked up), since further drops raise it while
/// the notice waits. It cannot occur in escaped text (`<` is always escaped there), nor in the
/// markup the component writes.
pub const MISSED_COUNT: &str = "<?missed-count?>";

/// The text of a notice of dropped notifications for a subscription (its id), given the time
/// the oldest dropped entry was queued; `None` queues no notice.
pub type NoticeText<'a> = dyn Fn(i64, i64) -> Option<String> + Sync + 'a;

/// The bounds of a publication (see [`Store::publish`]).
pub struct PublishLimits<'a> {
    /// Items kept per node.
    pub max_items: usize,
    /// Notifications waiting per subscription at most.
    pub max_pending: usize,
    /// The text of a new notice of dropped notifications.
    pub notice: &'a NoticeText<'a>,
}

/// What a publication queued and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Outbox ids of the stanzas given, in their order.
    pub ids: Vec<i64>,
    /// Waiting notifications deleted by the bound.
    pub dropped: u64,
}

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
    pub fn is_transient(&self) -> bool {
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

/// The subscriptions of one requester, counted (see [`Store::subscription_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// On every node of every usage point.
    pub total: u64,
    /// On the one series asked about.
    pub on_series: u64,
    /// The exact subscription asked about exists.
    pub exists: bool,
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

    // ---- Subscriptions (XEP-0060 and generation-2 push) ----

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
    /// entries stay (see [`Store::discard_pending`]).
    async fn unsubscribe(
        &self,
        kind: SubscriptionKind,
        usage_point: &str,
        series: Option<&str>,
        jid: &str,
        subid: Option<&str>,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Removes one subscription by id (bounce, revoked grant); returns it if it existed. Its
    /// pending outbox entries stay (see [`Store::discard_pending`]).
    async fn remove_subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError>;

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

    // ---- Publishing and the outbox ----

    /// The publish transaction, all or nothing: writes the batch's readings (exactly as
    /// [`Store::insert_readings`], same errors), the item if any (replacing an item with the same
    /// item id on its node, which makes it the newest; then keeping only `limits.max_items`
    /// newest items of that node), and queues the stanzas, each with the subscription it is for,
    /// to go at once.
    ///
    /// Then the bound: each subscription given here keeps at most `limits.max_pending` waiting
    /// notifications, its newest; older ones still unsent are deleted (the readings and items
    /// stay), except those a delivery has claimed and not yet released (already on their way).
    /// A subscription that lost some gets one notice, never dropped: its waiting notice, if one
    /// is neither claimed nor sent, counts them too; otherwise a new one is queued, the text
    /// `limits.notice` gives for (subscription, time the oldest dropped entry was queued), with
    /// [`MISSED_COUNT`] where the count goes. Returns the outbox ids, in the order of `outbox`,
    /// and how many entries were dropped.
    async fn publish(
        &self,
        batch: &Batch,
        item: Option<&Item>,
        outbox: &[(Option<i64>, String)],
        limits: &PublishLimits<'_>,
    ) -> Result<Published, StoreError>;

    /// Queues stanzas outside a publish (last item after a subscribe, subscription-ended
    /// notices), to go at once. Returns their ids, in order.
    async fn enqueue(&self, outbox: &[(Option<i64>, String)]) -> Result<Vec<i64>, StoreError>;

    /// Claims pending entries due at `now` (`not_before <= now`, unclaimed or whose claim has
    /// expired), oldest (smallest id) first, at most `limit`, for `lease_secs`: until
    /// `now + lease_secs` no other claim returns them, whichever instance asks (instances sharing
    /// a PostgreSQL get disjoint sets). Claimed entries neither marked sent nor put back are
    /// claimable again once the lease passes (crash: another instance or the restart resends).
    async fn claim_outbox(
        &self,
        now: i64,
        limit: usize,
        lease_secs: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Marks entries as written to the XMPP server at `at`; they are kept (for bounce handling)
    /// until [`Store::purge_sent`]. Entries already sent keep their first time; unknown ids are
    /// ignored.
    async fn mark_sent(&self, ids: &[i64], at: i64) -> Result<(), StoreError>;

    /// Makes claimed-but-unsent entries pending again at once (the link dropped before writing
    /// them), without counting an attempt: their claim ends, `attempts` and `not_before` stay.
    /// Unknown, unclaimed and already-sent ids are ignored. Returns how many were released.
    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// Puts an entry (pending, claimed or sent) back as pending, unclaimed, with attempts + 1 and
    /// this `not_before` (retry after a `wait` or `auth` bounce); false if unknown.
    async fn retry_later(&self, id: i64, not_before: i64) -> Result<bool, StoreError>;

    /// One entry by id, pending or sent (bounce handling).
    async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError>;

    /// Deletes the pending (unsent) entries of a subscription, claimed ones and notices included,
    /// and returns how many: for a subscription that ended because access ended, so that readings
    /// queued before do not go out after. Entries queued afterwards are not affected.
    async fn discard_pending(&self, subscription: i64) -> Result<u64, StoreError>;

    /// Deletes sent entries with `sent_at < before`; returns how many.
    async fn purge_sent(&self, before: i64) -> Result<u64, StoreError>;

    /// Number of pending (unsent) entries, claimed or not, due or not.
    async fn pending_count(&self) -> Result<u64, StoreError>;

    // ---- Items ----

    /// Items of a node, newest first, at most `limit` (`None` = all); with `ids`, only the items
    /// with those item ids. An unknown node has no items.
    async fn items(
        &self,
        usage_point: &str,
        series: &str,
        ids: Option<&[String]>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError>;

    /// The most recently published item of a node.
    async fn last_item(&self, usage_point: &str, series: &str) -> Result<Option<Item>, StoreError>;

    // ---- Consent chain (Enedis) ----

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

    /// Consents of a source not revoked and not expired at `now`, oldest first.
    async fn active_consents(&self, source: &str, now: i64) -> Result<Vec<Consent>, StoreError>;

    /// Revokes the consents on a usage point and their grants (the provider said the customer
    /// withdrew it); returns the revoked consents.
    async fn revoke_consents(&self, usage_point: &str) -> Result<Vec<Consent>, StoreError>;

    // ---- Upstream calls and the per-day cache ----

    /// Records a call about to be made; returns its id.
    async fn start_upstream_call(&self, call: &UpstreamCall) -> Result<i64, StoreError>;

    /// Completes a recorded call with its outcome.
    async fn finish_upstream_call(
        &self,
        id: i64,
        status: &str,
        code: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Recorded calls of a source with `started_at >= since`, oldest first.
    async fn upstream_calls(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<UpstreamCall>, StoreError>;

    /// Days (`YYYY-MM-DD`) in `[first, end)` already fetched from `api` for a usage point.
    async fn fetched_days(
        &self,
        usage_point: &str,
        api: &str,
        first: &str,
        end: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Marks days as fetched (idempotent).
    async fn mark_fetched(
        &self,
        usage_point: &str,
        api: &str,
        days: &[String],
        at: i64,
    ) -> Result<(), StoreError>;
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
