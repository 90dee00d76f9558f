//! The command sessions area: the open XEP-0050 sessions (a form shown and not yet submitted,
//! or a paged answer with pages left), kept in the store rather than in one process so that
//! instances sharing a PostgreSQL database serve any stage of any session: the XMPP server may
//! balance the stanzas of one session between them.
//!
//! The store enforces the limits itself, atomically: opening a session expires the idle ones,
//! counts and inserts in one transaction that excludes every other opening (SQLite's write
//! lock, a table lock on PostgreSQL), so that two instances cannot both take the last place.
//! Taking a session is one `DELETE … RETURNING`: a stage sent twice, to two instances, is
//! processed once. What a session carries between stages (`state`) is opaque text here; the
//! engine (`xep::adhoc`) says what it holds.

use async_trait::async_trait;

use super::StoreError;

/// A session to keep. Strings are compared byte for byte when the session is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSession<'a> {
    /// The session id, unguessable (the engine draws it at random).
    pub id: &'a str,
    /// The command node.
    pub node: &'a str,
    /// The full JID that opened it: only it may continue it.
    pub owner: &'a str,
    /// Its bare JID, whose resources share the per-requester limit.
    pub requester: &'a str,
    /// The JID the command was addressed to.
    pub target: &'a str,
    /// What the next stage needs; `None` while the form is awaited.
    pub state: Option<&'a str>,
}

/// Who may take a session: the same full JID, at the same target, on the same node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub target: &'a str,
    pub node: &'a str,
}

/// How many sessions may be open and how long an idle one lasts (unix seconds throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions one requester (bare JID) may hold.
    pub per_requester: usize,
    /// Sessions open at once, all requesters together.
    pub total: usize,
    /// How long an idle session is kept, in seconds.
    pub ttl: i64,
    /// How long, while more than 3/4 of `total` are open.
    pub pressure_ttl: i64,
}

impl SessionLimits {
    /// How long an idle session is kept while `open` sessions are in the table: a flood of
    /// abandoned sessions from many accounts cannot keep the table full for long.
    pub fn ttl_at(&self, open: u64) -> i64 {
        let open = usize::try_from(open).unwrap_or(usize::MAX);
        if open.saturating_mul(4) > self.total.saturating_mul(3) {
            self.ttl.min(self.pressure_ttl)
        } else {
            self.ttl
        }
    }
}

/// What [`SessionStore::open_session`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The session is kept.
    Opened,
    /// The requester already holds `per_requester` sessions; nothing was kept.
    RequesterFull,
    /// `total` sessions are open (`open` of them, after expiry); nothing was kept.
    TableFull { open: u64 },
}

/// What [`SessionStore::take_session`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// No such session, or not this owner's at this target on this node: nothing changed.
    Unknown,
    /// The session had been idle for its time to live; it is gone now.
    Expired,
    /// The session, now removed, with its state.
    Live { state: Option<String> },
}

/// Open command sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Keeps a session touched at `now`, within `limits`, atomically against every other
    /// opening (other instances included). First deletes the sessions idle for
    /// [`SessionLimits::ttl_at`] the number open; then refuses if the requester holds
    /// `per_requester` sessions, else if `total` are open. A duplicate id is a
    /// [`StoreError::Database`].
    async fn open_session(
        &self,
        session: &NewSession<'_>,
        limits: &SessionLimits,
        now: i64,
    ) -> Result<Opened, StoreError>;

    /// Removes and returns the session `key` names, if it is the owner's at that target on that
    /// node; one statement, so of two takes of one session (two instances) one finds it. A
    /// session idle at `now` for [`SessionLimits::ttl_at`] the number open (itself included) is
    /// removed and reported [`Taken::Expired`]. Someone else's session is left as it is.
    async fn take_session(
        &self,
        key: &SessionKey<'_>,
        limits: &SessionLimits,
        now: i64,
    ) -> Result<Taken, StoreError>;

    /// Sessions in the table, expired ones not yet deleted included.
    async fn session_count(&self) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_to_live_shortens_above_three_quarters() {
        let limits = SessionLimits {
            per_requester: 4,
            total: 8,
            ttl: 600,
            pressure_ttl: 60,
        };
        assert_eq!(limits.ttl_at(0), 600);
        assert_eq!(limits.ttl_at(6), 600);
        assert_eq!(limits.ttl_at(7), 60);
        assert_eq!(limits.ttl_at(u64::MAX), 60);
        // A time to live shorter than the pressure one stays.
        let short = SessionLimits { ttl: 5, ..limits };
        assert_eq!(short.ttl_at(8), 5);
    }
}
