//! The SQL of the outbox area ([`OutboxStore`](crate::store::OutboxStore)): the life of an
//! outbox entry. Part of it differs between the backends (list parameters, multi-row inserts, the
//! claim, locking), so each provides those statements and this file ties them together.

pub(in crate::store) const RETRY_LATER: &str =
    "UPDATE outbox SET sent_at = NULL, claimed_until = NULL, \
     attempts = attempts + 1, not_before = $1 WHERE id = $2";

pub(in crate::store) const DISCARD_PENDING: &str =
    "DELETE FROM outbox WHERE subscription_id = $1 AND sent_at IS NULL";

pub(in crate::store) const PURGE_SENT: &str =
    "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1";

pub(in crate::store) const PENDING_COUNT: &str =
    "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

/// The queue time of the oldest pending entry on its first attempt (entries waiting for a retry
/// after a bounce are old on purpose); the pending index in id order finds it at once.
pub(in crate::store) const OLDEST_PENDING: &str = "SELECT created_at FROM outbox \
     WHERE sent_at IS NULL AND attempts = 0 ORDER BY id LIMIT 1";

/// The [`OutboxStore`](crate::store::OutboxStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write;
/// - `insert_outbox(conn, &[OutboxInsert], now) -> Result<Vec<i64>, StoreError>`: the new
///   entries' ids, in order;
/// - `id_list(&[i64])`: a list as one bound parameter;
/// - the statements `CLAIM_OUTBOX` (`$1` claim end, `$2` now, `$3` limit: due entries claimed by
///   no one else), `MARK_SENT` (`$1` time, `$2` id list) and `RELEASE` (`$1` id list).
macro_rules! impl_outbox {
    ($store:ident, $connection:ty) => {
        mod outbox_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::OutboxEntry;
            use $crate::store::common::{count_from_sql, limit_to_sql, OutboxInsert};
            use $crate::store::rows::{outbox_from_rows, unix_now, OutboxRow, OUTBOX_COLUMNS};
            use $crate::store::sql::outbox::{
                DISCARD_PENDING, OLDEST_PENDING, PENDING_COUNT, PURGE_SENT, RETRY_LATER,
            };
            use $crate::store::{NewOutboxEntry, OutboxStore, StoreError};

            #[async_trait]
            impl OutboxStore for $store {
                async fn enqueue(&self, outbox: &[NewOutboxEntry]) -> Result<Vec<i64>, StoreError> {
                    if outbox.is_empty() {
                        return Ok(Vec::new());
                    }
                    let entries: Vec<OutboxInsert<'_>> = outbox
                        .iter()
                        .map(|e| OutboxInsert {
                            subscription: e.subscription,
                            stanza: &e.stanza,
                        })
                        .collect();
                    // SQLite may need several statements for a long list: all of them or none.
                    let mut tx = self.begin_write().await?;
                    let ids = insert_outbox(&mut tx, &entries, unix_now()).await?;
                    tx.commit().await?;
                    Ok(ids)
                }

                async fn claim_outbox(
                    &self,
                    now: i64,
                    limit: usize,
                    lease_secs: i64,
                ) -> Result<Vec<OutboxEntry>, StoreError> {
                    let rows: Vec<OutboxRow> = sqlx::query_as(CLAIM_OUTBOX)
                        .bind(now.saturating_add(lease_secs))
                        .bind(now)
                        .bind(limit_to_sql(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(outbox_from_rows(rows))
                }

                async fn mark_sent(&self, ids: &[i64], at: i64) -> Result<(), StoreError> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    sqlx::query(MARK_SENT)
                        .bind(at)
                        .bind(id_list(ids))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    Ok(sqlx::query(RELEASE)
                        .bind(id_list(ids))
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn retry_later(&self, id: i64, not_before: i64) -> Result<bool, StoreError> {
                    let changed = sqlx::query(RETRY_LATER)
                        .bind(not_before)
                        .bind(id)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    Ok(changed > 0)
                }

                async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
                    let row: Option<OutboxRow> = sqlx::query_as(&format!(
                        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(OutboxEntry::from))
                }

                async fn discard_pending(&self, subscription: i64) -> Result<u64, StoreError> {
                    Ok(sqlx::query(DISCARD_PENDING)
                        .bind(subscription)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn purge_sent(&self, before: i64) -> Result<u64, StoreError> {
                    Ok(sqlx::query(PURGE_SENT)
                        .bind(before)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn pending_count(&self) -> Result<u64, StoreError> {
                    let count: i64 = sqlx::query_scalar(PENDING_COUNT)
                        .fetch_one(&self.pool)
                        .await?;
                    count_from_sql(count)
                }

                async fn oldest_pending(&self) -> Result<Option<i64>, StoreError> {
                    Ok(sqlx::query_scalar(OLDEST_PENDING)
                        .fetch_optional(&self.pool)
                        .await?)
                }
            }
        }
    };
}

pub(in crate::store) use impl_outbox;
