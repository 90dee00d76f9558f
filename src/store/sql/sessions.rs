//! The SQL of the command sessions area ([`SessionStore`](crate::store::SessionStore)), the same
//! on both backends but for the transaction that keeps openings apart.
//!
//! The table never holds more than `sessions_total` rows (an opening counts them under the
//! lock), so every count and expiry here is bounded whatever the requests.

pub(in crate::store) const COUNT_SESSIONS: &str = "SELECT COUNT(*) FROM adhoc_sessions";

/// The requester's sessions, one range of `adhoc_sessions_requester`.
pub(in crate::store) const COUNT_REQUESTER_SESSIONS: &str =
    "SELECT COUNT(*) FROM adhoc_sessions WHERE requester = $1";

/// Sessions last touched at or before `$1` (now minus their time to live) have expired.
pub(in crate::store) const EXPIRE_SESSIONS: &str =
    "DELETE FROM adhoc_sessions WHERE touched_at <= $1";

pub(in crate::store) const INSERT_SESSION: &str =
    "INSERT INTO adhoc_sessions (id, node, owner, requester, target, state, touched_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Takes a session: only its owner's, at its target, on its node; one statement, so two takes
/// of one session cannot both return it.
pub(in crate::store) const TAKE_SESSION: &str = "DELETE FROM adhoc_sessions \
     WHERE id = $1 AND owner = $2 AND target = $3 AND node = $4 RETURNING touched_at, state";

/// The [`SessionStore`](crate::store::SessionStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides `$store::begin_sessions(&self)`: a transaction that may write, in which no other
/// opening (of this instance or another) runs until it ends.
macro_rules! impl_sessions {
    ($store:ident, $connection:ty) => {
        mod sessions_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::store::common::count_from_sql;
            use $crate::store::sql::sessions::{
                COUNT_REQUESTER_SESSIONS, COUNT_SESSIONS, EXPIRE_SESSIONS, INSERT_SESSION,
                TAKE_SESSION,
            };
            use $crate::store::{
                NewSession, Opened, SessionKey, SessionLimits, SessionStore, StoreError, Taken,
            };

            #[async_trait]
            impl SessionStore for $store {
                async fn open_session(
                    &self,
                    session: &NewSession<'_>,
                    limits: &SessionLimits,
                    now: i64,
                ) -> Result<Opened, StoreError> {
                    let mut tx = self.begin_sessions().await?;
                    let open: i64 = sqlx::query_scalar(COUNT_SESSIONS)
                        .fetch_one(&mut *tx)
                        .await?;
                    let ttl = limits.ttl_at(count_from_sql(open)?);
                    let expired = sqlx::query(EXPIRE_SESSIONS)
                        .bind(now.saturating_sub(ttl))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    let open = count_from_sql(open)?.saturating_sub(expired);
                    let mine: i64 = sqlx::query_scalar(COUNT_REQUESTER_SESSIONS)
                        .bind(session.requester)
                        .fetch_one(&mut *tx)
                        .await?;
                    let at_most = |limit: usize| u64::try_from(limit).unwrap_or(u64::MAX);
                    let refusal = if count_from_sql(mine)? >= at_most(limits.per_requester) {
                        Some(Opened::RequesterFull)
                    } else if open >= at_most(limits.total) {
                        Some(Opened::TableFull { open })
                    } else {
                        None
                    };
                    if let Some(refusal) = refusal {
                        // The expired sessions stay deleted: their places are free for others.
                        tx.commit().await?;
                        return Ok(refusal);
                    }
                    sqlx::query(INSERT_SESSION)
                        .bind(session.id)
                        .bind(session.node)
                        .bind(session.owner)
                        .bind(session.requester)
                        .bind(session.target)
                        .bind(session.state)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Opened::Opened)
                }

                async fn take_session(
                    &self,
                    key: &SessionKey<'_>,
                    limits: &SessionLimits,
                    now: i64,
                ) -> Result<Taken, StoreError> {
                    // Counted before the take, the session itself included; a take racing
                    // with another only moves the count by a few, which the pressure
                    // threshold tolerates.
                    let open: i64 = sqlx::query_scalar(COUNT_SESSIONS)
                        .fetch_one(&self.pool)
                        .await?;
                    let row: Option<(i64, Option<String>)> = sqlx::query_as(TAKE_SESSION)
                        .bind(key.id)
                        .bind(key.owner)
                        .bind(key.target)
                        .bind(key.node)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(match row {
                        None => Taken::Unknown,
                        Some((touched_at, _))
                            if now.saturating_sub(touched_at)
                                >= limits.ttl_at(count_from_sql(open)?) =>
                        {
                            Taken::Expired
                        }
                        Some((_, state)) => Taken::Live { state },
                    })
                }

                async fn session_count(&self) -> Result<u64, StoreError> {
                    let count: i64 = sqlx::query_scalar(COUNT_SESSIONS)
                        .fetch_one(&self.pool)
                        .await?;
                    count_from_sql(count)
                }
            }
        }
    };
}

pub(in crate::store) use impl_sessions;
