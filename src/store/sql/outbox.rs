//! The SQL of the outbox area ([`OutboxStore`](crate::store::OutboxStore)): the publish
//! transaction and the life of an outbox entry. Most of it differs between the backends (list
//! parameters, multi-row inserts, the claim, locking), so each provides those statements and this
//! file ties them together.

/// Keeps the `$2` newest items of series `$1`: deletes from the (`$2` + 1)-th newest down. No
/// such item, nothing deleted (`id <= NULL` is never true).
pub(in crate::store) const TRIM_ITEMS: &str = "DELETE FROM items WHERE series_id = $1 AND id <= \
     (SELECT id FROM items WHERE series_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

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
/// - `upsert_readings(conn, series_id, &[Reading]) -> Result<u64, StoreError>`: rows written;
/// - `insert_outbox(conn, &[OutboxInsert], now) -> Result<Vec<i64>, StoreError>`: the new
///   entries' ids, in order;
/// - for the bound of [`OutboxStore::publish`](crate::store::OutboxStore::publish):
///   `bump_outbox_seq(conn, &[(subscription, n)])` adds `n` to each subscription's `outbox_seq`
///   and returns the new values (on PostgreSQL, having locked those subscriptions until the
///   transaction ends); `drop_beyond(conn, &[subscription], keep, now)` deletes their unclaimed
///   waiting entries numbered `keep` or more behind the newest and returns
///   `(subscription, created_at)` of each; `add_to_notices(conn, &[(subscription, n)])` adds `n`
///   to the newest waiting unclaimed notice of each and returns the subscriptions that had one;
/// - `put_item(conn, series_id, &Item) -> Result<(), StoreError>`: stores an item as the
///   newest of its node, replacing one of the same id;
/// - `id_list(&[i64])`: a list as one bound parameter;
/// - the statements `CLAIM_OUTBOX` (`$1` claim end, `$2` now, `$3` limit: due entries claimed by
///   no one else), `MARK_SENT` (`$1` time, `$2` id list) and `RELEASE` (`$1` id list).
macro_rules! impl_outbox {
    ($store:ident, $connection:ty) => {
        mod outbox_sql {
            use async_trait::async_trait;

            use super::sql_helpers::series_id;
            use super::*;
            use $crate::model::{Batch, Item, OutboxEntry};
            use $crate::store::common::{
                count_from_sql, entries_per_subscription, limit_to_sql, number_entries,
                prepare_readings, tally_drops, OutboxInsert,
            };
            use $crate::store::rows::{outbox_from_rows, unix_now, OutboxRow, OUTBOX_COLUMNS};
            use $crate::store::sql::outbox::{
                DISCARD_PENDING, OLDEST_PENDING, PENDING_COUNT, PURGE_SENT, RETRY_LATER, TRIM_ITEMS,
            };
            use $crate::store::{
                NewOutboxEntry, OutboxStore, PublishLimits, Published, StoreError,
            };

            /// The bound of [`OutboxStore::publish`], once the publication's entries are queued and
            /// numbered (`newest`: each subscription's last number): drops the waiting entries
            /// beyond `limits.max_pending` and counts them into each subscription's waiting
            /// notice, or a new one. Returns how many were dropped.
            async fn bound_outbox(
                conn: &mut $connection,
                newest: &[(i64, i64)],
                limits: &PublishLimits<'_>,
                now: i64,
            ) -> Result<u64, StoreError> {
                let subscriptions: Vec<i64> = newest.iter().map(|(id, _)| *id).collect();
                let keep = limit_to_sql(limits.max_pending);
                let gone = drop_beyond(&mut *conn, &subscriptions, keep, now).await?;
                let tally = tally_drops(&gone);
                if tally.is_empty() {
                    return Ok(0);
                }
                let counts: Vec<(i64, i64)> = tally.iter().map(|(s, (n, _))| (*s, *n)).collect();
                let counted: std::collections::HashSet<i64> = add_to_notices(&mut *conn, &counts)
                    .await?
                    .into_iter()
                    .collect();
                let texts: Vec<(i64, i64, String)> = tally
                    .iter()
                    .filter(|(s, _)| !counted.contains(*s))
                    .filter_map(|(s, (n, since))| Some((*s, *n, (limits.notice)(*s, *since)?)))
                    .collect();
                let notices: Vec<OutboxInsert<'_>> = texts
                    .iter()
                    .map(|(s, n, text)| OutboxInsert {
                        missed: Some(*n),
                        ..OutboxInsert::plain(Some(*s), text)
                    })
                    .collect();
                insert_outbox(conn, &notices, now).await?;
                Ok(u64::try_from(gone.len()).unwrap_or(u64::MAX))
            }

            #[async_trait]
            impl OutboxStore for $store {
                async fn publish(
                    &self,
                    batch: &Batch,
                    item: Option<&Item>,
                    outbox: &[NewOutboxEntry],
                    limits: &PublishLimits<'_>,
                ) -> Result<Published, StoreError> {
                    let readings = prepare_readings(batch)?;
                    let now = unix_now();
                    let mut tx = self.begin_write().await?;
                    let batch_series =
                        series_id(&mut tx, &batch.usage_point, &batch.series).await?;
                    upsert_readings(&mut tx, batch_series, &readings).await?;
                    if let Some(item) = item {
                        let item_series = if item.usage_point == batch.usage_point
                            && item.series == batch.series
                        {
                            batch_series
                        } else {
                            series_id(&mut tx, &item.usage_point, &item.series).await?
                        };
                        put_item(&mut tx, item_series, item).await?;
                        sqlx::query(TRIM_ITEMS)
                            .bind(item_series)
                            .bind(limit_to_sql(limits.max_items))
                            .execute(&mut *tx)
                            .await?;
                    }
                    // Rows for no subscription, or for none left, are not numbered: never dropped.
                    let counts = entries_per_subscription(outbox);
                    let newest = if counts.is_empty() {
                        Vec::new()
                    } else {
                        bump_outbox_seq(&mut tx, &counts).await?
                    };
                    let ids = insert_outbox(&mut tx, &number_entries(outbox, &newest), now).await?;
                    let dropped = if newest.is_empty() {
                        0
                    } else {
                        bound_outbox(&mut tx, &newest, limits, now).await?
                    };
                    tx.commit().await?;
                    Ok(Published { ids, dropped })
                }

                async fn enqueue(&self, outbox: &[NewOutboxEntry]) -> Result<Vec<i64>, StoreError> {
                    if outbox.is_empty() {
                        return Ok(Vec::new());
                    }
                    let entries: Vec<OutboxInsert<'_>> = outbox
                        .iter()
                        .map(|e| OutboxInsert::plain(e.subscription, &e.stanza))
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
