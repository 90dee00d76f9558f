//! The SQL of the fan-out area ([`FanoutStore`](crate::store::FanoutStore)): the publish
//! transaction, and the cursors over publications. The claim and the advance differ between the
//! backends (locking, list parameters), so each provides those and this file ties them together.

/// Keeps the `$2` newest items of series `$1`: deletes from the (`$2` + 1)-th newest down. No
/// such item, nothing deleted (`id <= NULL` is never true).
pub(in crate::store) const TRIM_ITEMS: &str = "DELETE FROM items WHERE series_id = $1 AND id <= \
     (SELECT id FROM items WHERE series_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

/// The next publication number of series `$1`. On PostgreSQL the row stays locked until the
/// transaction ends, so two instances publishing on one series number in turn.
pub(in crate::store) const BUMP_HEAD: &str =
    "UPDATE series SET published_seq = published_seq + 1 WHERE id = $1 RETURNING published_seq";

pub(in crate::store) const INSERT_PUBLICATION: &str = "INSERT INTO publications \
     (series_id, seq, published_at, pubsub, push) VALUES ($1, $2, $3, $4, $5)";

/// Notes that series `$1` has publications up to `$2` to deliver. Always an update of the row
/// (never "do nothing"): it locks the row on PostgreSQL, so a concurrent
/// [`SETTLE`] re-checks the new head and keeps it.
pub(in crate::store) const NOTE_WORK: &str =
    "INSERT INTO fanout (series_id, head) VALUES ($1, $2) \
     ON CONFLICT (series_id) DO UPDATE SET head = excluded.head";

pub(in crate::store) const HEAD: &str = "SELECT published_seq FROM series WHERE id = $1";

pub(in crate::store) const PUBLICATIONS: &str = "SELECT seq, published_at, pubsub, push \
     FROM publications WHERE series_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

pub(in crate::store) const PUBLICATION_OF_SERIES: &str =
    "SELECT p.seq, p.published_at, p.pubsub, p.push FROM subscriptions AS s \
     JOIN publications AS p ON p.series_id = s.series_id AND p.seq = $2 WHERE s.id = $1";

/// Series nobody is behind on any more. The head is read from the row being deleted, so a
/// publication noted meanwhile (its update re-checked by PostgreSQL) keeps the row.
pub(in crate::store) const SETTLE: &str = "DELETE FROM fanout WHERE NOT EXISTS \
     (SELECT 1 FROM subscriptions AS s WHERE s.series_id = fanout.series_id \
     AND s.delivered_seq < fanout.head)";

/// Publications older than `$1` that every subscription of their series has passed (all of
/// them when the series has no subscription).
pub(in crate::store) const PRUNE: &str = "DELETE FROM publications WHERE published_at < $1 \
     AND seq <= COALESCE((SELECT MIN(s.delivered_seq) FROM subscriptions AS s \
     WHERE s.series_id = publications.series_id), seq)";

pub(in crate::store) const RELEASE_SUBSCRIPTIONS: &str =
    "UPDATE subscriptions SET claimed_until = NULL, claim_id = NULL WHERE claim_id IS NOT NULL";

pub(in crate::store) const RELEASE_OUTBOX: &str = "UPDATE outbox SET claimed_until = NULL \
     WHERE sent_at IS NULL AND claimed_until IS NOT NULL";

/// Undelivered notifications (publications after each cursor), and the oldest one's time: only
/// the series with work and the subscriptions behind on them are read (`CROSS JOIN` keeps
/// SQLite from starting with every subscription; PostgreSQL plans it as any join).
pub(in crate::store) const PENDING: &str =
    "SELECT CAST(COALESCE(SUM(f.head - s.delivered_seq), 0) AS BIGINT), MIN(p.published_at) \
     FROM fanout AS f CROSS JOIN subscriptions AS s \
     LEFT JOIN publications AS p ON p.series_id = s.series_id AND p.seq = s.delivered_seq + 1 \
     WHERE s.series_id = f.series_id AND s.delivered_seq < f.head";

/// The [`FanoutStore`](crate::store::FanoutStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write;
/// - `upsert_readings(conn, series_id, &[Reading]) -> Result<u64, StoreError>`: rows written;
/// - `put_item(conn, series_id, &Item) -> Result<(), StoreError>`: stores an item as the
///   newest of its node, replacing one of the same id; `put_items(conn, &[(series_id, Item)])`
///   likewise for many, in order;
/// - for [`FanoutStore::publish_new`], statements over a whole group:
///   `series_ids(conn, &[(usage_point, path)])` → `(usage_point, path, id)` of those that exist;
///   `upsert_changed(conn, &[(series_id, time, value)])` → the `(series_id, time)` rows it
///   inserted or changed (rows unique, in key order); `TRIM_ITEMS_OF` (`$1` a list of series
///   as `id_list` gives it, `$2` how many items each keeps); `bump_heads(conn, &[(series_id,
///   n)])` → each series' new head; `insert_publications(conn, &[(series_id, seq,
///   &NewPublication)], now)`; `note_work(conn, &[(series_id, head)])` ([`NOTE_WORK`] for
///   many); `$store::lock_audit(conn)`: takes the audit log's lock in a write transaction;
/// - `CLAIM_FANOUT`: the claim (`$1` claim end, `$2` claim id, `$3` now, `$4` limit), returning
///   the columns of `ClaimRow`;
/// - `ADVANCE` (`$1` a list of subscriptions as `id_list` gives it, `$2` the seq, `$3` the
///   claim, `$4` done) and `id_list(&[i64])`.
macro_rules! impl_fanout {
    ($store:ident, $connection:ty) => {
        mod fanout_sql {
            use std::collections::btree_map::Entry;
            use std::collections::{BTreeMap, HashMap, HashSet};

            use async_trait::async_trait;

            use super::sql_helpers::series_id;
            use super::*;
            use $crate::model::{AuditEntry, Batch, Item, Reading};
            use $crate::store::common::{
                count_from_sql, limit_to_sql, one_advance_per_subscription, prepare_readings,
            };
            use $crate::store::rows::{unix_now, ClaimRow, PublicationRow};
            use $crate::store::sql::fanout::{
                BUMP_HEAD, HEAD, INSERT_PUBLICATION, NOTE_WORK, PENDING, PRUNE, PUBLICATIONS,
                PUBLICATION_OF_SERIES, RELEASE_OUTBOX, RELEASE_SUBSCRIPTIONS, SETTLE, TRIM_ITEMS,
            };
            use $crate::store::{
                Advance, Claimed, FanoutStore, NewPublication, Prepare, Publication, StoreError,
            };

            /// The series id of each batch, with one lookup for the group.
            async fn group_series_ids(
                tx: &mut $connection,
                batches: &[Batch],
            ) -> Result<Vec<i64>, StoreError> {
                let mut keys: Vec<(&str, &str)> = batches
                    .iter()
                    .map(|b| (b.usage_point.as_str(), b.series.as_str()))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                let mut found = series_ids(&mut *tx, &keys).await?;
                found.sort_unstable();
                batches
                    .iter()
                    .map(|b| {
                        let key = (b.usage_point.as_str(), b.series.as_str());
                        found
                            .binary_search_by(|(u, s, _)| (u.as_str(), s.as_str()).cmp(&key))
                            .map(|at| found[at].2)
                            .map_err(|_| StoreError::UnknownSeries {
                                usage_point: b.usage_point.clone(),
                                series: b.series.clone(),
                            })
                    })
                    .collect()
            }

            /// One publication inside the caller's transaction (see `FanoutStore::publish`);
            /// `readings` are the batch's, checked by `prepare_readings`.
            async fn publish_in(
                tx: &mut $connection,
                batch: &Batch,
                readings: &[$crate::model::Reading],
                item: Option<&Item>,
                publication: Option<&NewPublication>,
                max_items: usize,
                now: i64,
            ) -> Result<Option<i64>, StoreError> {
                let batch_series = series_id(&mut *tx, &batch.usage_point, &batch.series).await?;
                upsert_readings(&mut *tx, batch_series, readings).await?;
                if let Some(item) = item {
                    let item_series =
                        if item.usage_point == batch.usage_point && item.series == batch.series {
                            batch_series
                        } else {
                            series_id(&mut *tx, &item.usage_point, &item.series).await?
                        };
                    put_item(&mut *tx, item_series, item).await?;
                    sqlx::query(TRIM_ITEMS)
                        .bind(item_series)
                        .bind(limit_to_sql(max_items))
                        .execute(&mut *tx)
                        .await?;
                }
                let Some(publication) = publication else {
                    return Ok(None);
                };
                let head: i64 = sqlx::query_scalar(BUMP_HEAD)
                    .bind(batch_series)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(INSERT_PUBLICATION)
                    .bind(batch_series)
                    .bind(head)
                    .bind(now)
                    .bind(&publication.pubsub)
                    .bind(&publication.push)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(NOTE_WORK)
                    .bind(batch_series)
                    .bind(head)
                    .execute(&mut *tx)
                    .await?;
                Ok(Some(head))
            }

            #[async_trait]
            impl FanoutStore for $store {
                async fn publish(
                    &self,
                    batch: &Batch,
                    item: Option<&Item>,
                    publication: Option<&NewPublication>,
                    max_items: usize,
                ) -> Result<Option<i64>, StoreError> {
                    let readings = prepare_readings(batch)?;
                    let mut tx = self.begin_write().await?;
                    let seq = publish_in(
                        &mut tx,
                        batch,
                        &readings,
                        item,
                        publication,
                        max_items,
                        unix_now(),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(seq)
                }

                async fn publish_new(
                    &self,
                    batches: &[Batch],
                    prepare: &Prepare<'_>,
                    max_items: usize,
                    audit: &[AuditEntry],
                ) -> Result<Vec<usize>, StoreError> {
                    // Checked before the transaction, like `publish`: a bad batch writes nothing.
                    let prepared = batches
                        .iter()
                        .map(prepare_readings)
                        .collect::<Result<Vec<_>, _>>()?;
                    let now = unix_now();
                    let mut tx = self.begin_write().await?;
                    let ids = group_series_ids(&mut tx, batches).await?;
                    // One row per (series, time), the last value sent, in key order: PostgreSQL
                    // refuses an upsert touching a row twice, and a fixed lock order keeps two
                    // instances writing overlapping groups out of a deadlock.
                    let mut last: BTreeMap<(i64, i64), f64> = BTreeMap::new();
                    for (&series, readings) in ids.iter().zip(&prepared) {
                        for r in readings {
                            last.insert((series, r.time), r.value);
                        }
                    }
                    let rows: Vec<(i64, i64, f64)> =
                        last.into_iter().map(|((s, t), v)| (s, t, v)).collect();
                    let changed: HashSet<(i64, i64)> =
                        upsert_changed(&mut tx, &rows).await?.into_iter().collect();

                    let mut seen: HashMap<(i64, i64), f64> = HashMap::new();
                    let mut counts = Vec::with_capacity(batches.len());
                    let mut items: Vec<(i64, Item)> = Vec::new();
                    let mut publications: Vec<(i64, NewPublication)> = Vec::new();
                    for (index, ((batch, readings), &series)) in
                        batches.iter().zip(&prepared).zip(&ids).enumerate()
                    {
                        let new: Vec<Reading> = readings
                            .iter()
                            .filter(|r| {
                                changed.contains(&(series, r.time))
                                    && seen.insert((series, r.time), r.value) != Some(r.value)
                            })
                            .copied()
                            .collect();
                        counts.push(new.len());
                        if new.is_empty() {
                            continue;
                        }
                        let fresh = Batch {
                            usage_point: batch.usage_point.clone(),
                            series: batch.series.clone(),
                            readings: new,
                        };
                        let (item, publication) = prepare(index, &fresh);
                        items.push((series, item));
                        publications.push((series, publication));
                    }
                    if !publications.is_empty() {
                        put_items(&mut tx, &items).await?;
                        let mut per_series: BTreeMap<i64, i64> = BTreeMap::new();
                        for (series, _) in &publications {
                            *per_series.entry(*series).or_default() += 1;
                        }
                        let touched: Vec<i64> = per_series.keys().copied().collect();
                        sqlx::query(TRIM_ITEMS_OF)
                            .bind(id_list(&touched))
                            .bind(limit_to_sql(max_items))
                            .execute(&mut *tx)
                            .await?;
                        let counts_per_series: Vec<(i64, i64)> = per_series.into_iter().collect();
                        let heads = bump_heads(&mut tx, &counts_per_series).await?;
                        // Each series' publications of the group take the seqs up to its new
                        // head, in batch order.
                        let mut next: HashMap<i64, i64> = counts_per_series
                            .iter()
                            .filter_map(|&(series, n)| {
                                let head = heads.iter().find(|h| h.0 == series)?.1;
                                Some((series, head - n + 1))
                            })
                            .collect();
                        let mut rows = Vec::with_capacity(publications.len());
                        for (series, publication) in &publications {
                            let seq = next.get_mut(series).ok_or_else(|| {
                                StoreError::Corrupt(format!("series {series} returned no head"))
                            })?;
                            rows.push((*series, *seq, publication));
                            *seq += 1;
                        }
                        insert_publications(&mut tx, &rows, now).await?;
                        note_work(&mut tx, &heads).await?;
                    }
                    if !audit.is_empty() {
                        // Last, so the log's lock is held for the shortest time.
                        $store::lock_audit(&mut tx).await?;
                        super::audit_sql::append(&mut tx, audit).await?;
                    }
                    tx.commit().await?;
                    Ok(counts)
                }

                async fn claim_fanout(
                    &self,
                    now: i64,
                    limit: usize,
                    lease_secs: i64,
                    claim: i64,
                ) -> Result<Vec<Claimed>, StoreError> {
                    let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_FANOUT)
                        .bind(now.saturating_add(lease_secs))
                        .bind(claim)
                        .bind(now)
                        .bind(limit_to_sql(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    // Each series' head once per claim (a claim holds few series), not per row.
                    let mut heads: BTreeMap<i64, i64> = BTreeMap::new();
                    for row in &rows {
                        if let Entry::Vacant(slot) = heads.entry(row.series_id) {
                            slot.insert(
                                sqlx::query_scalar(HEAD)
                                    .bind(row.series_id)
                                    .fetch_one(&self.pool)
                                    .await?,
                            );
                        }
                    }
                    let mut claimed = rows
                        .into_iter()
                        .map(|row| {
                            let head = heads.get(&row.series_id).copied().unwrap_or_default();
                            row.claimed(head)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    // Series together, then subscription order: one read of publications per
                    // series, and a stable order.
                    claimed.sort_by_key(|c| (c.series_id, c.subscription.id));
                    Ok(claimed)
                }

                async fn publications(
                    &self,
                    series_id: i64,
                    after: i64,
                    limit: usize,
                ) -> Result<Vec<Publication>, StoreError> {
                    let rows: Vec<PublicationRow> = sqlx::query_as(PUBLICATIONS)
                        .bind(series_id)
                        .bind(after)
                        .bind(limit_to_sql(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Publication::from).collect())
                }

                async fn publication_for(
                    &self,
                    subscription: i64,
                    seq: i64,
                ) -> Result<Option<Publication>, StoreError> {
                    let row: Option<PublicationRow> = sqlx::query_as(PUBLICATION_OF_SERIES)
                        .bind(subscription)
                        .bind(seq)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(Publication::from))
                }

                async fn advance(&self, advances: &[Advance]) -> Result<(), StoreError> {
                    if advances.is_empty() {
                        return Ok(());
                    }
                    // One statement per (seq, claim, done): a batch of reports is mostly one
                    // group, so the cursors of a claim move in one statement, one commit.
                    let mut groups: BTreeMap<(i64, i64, bool), Vec<i64>> = BTreeMap::new();
                    for a in one_advance_per_subscription(advances) {
                        groups
                            .entry((a.seq, a.claim, a.done))
                            .or_default()
                            .push(a.subscription);
                    }
                    let mut tx = self.begin_write().await?;
                    for ((seq, claim, done), ids) in groups {
                        sqlx::query(ADVANCE)
                            .bind(id_list(&ids))
                            .bind(seq)
                            .bind(claim)
                            .bind(done)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn settle_fanout(&self) -> Result<u64, StoreError> {
                    Ok(sqlx::query(SETTLE)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn prune_publications(&self, before: i64) -> Result<u64, StoreError> {
                    Ok(sqlx::query(PRUNE)
                        .bind(before)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn release_all_claims(&self) -> Result<u64, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let subscriptions = sqlx::query(RELEASE_SUBSCRIPTIONS)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    let entries = sqlx::query(RELEASE_OUTBOX)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(subscriptions + entries)
                }

                async fn fanout_pending(&self) -> Result<(u64, Option<i64>), StoreError> {
                    let (count, oldest): (i64, Option<i64>) =
                        sqlx::query_as(PENDING).fetch_one(&self.pool).await?;
                    Ok((count_from_sql(count)?, oldest))
                }
            }
        }
    };
}

pub(in crate::store) use impl_fanout;
