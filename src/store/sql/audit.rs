//! The SQL of the audit area ([`AuditStore`](crate::store::AuditStore)), the same on both
//! backends.

/// The [`AuditStore`](crate::store::AuditStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_audit(&self)`: a transaction holding the log's lock, so that one append
///   at a time reads the head and writes after it;
/// - `$store::next_audit_ids(conn, n)`: the ids the next `n` entries take, within that lock.
macro_rules! impl_audit {
    ($store:ident, $connection:ty) => {
        mod audit_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::audit_chain::{entry_hash, ChainedEntry, Checkpoint, GENESIS};
            use $crate::model::AuditEntry;
            use $crate::store::common::limit_to_sql;
            use $crate::store::rows::{AuditRow, ChainedAuditRow, AUDIT_COLUMNS};
            use $crate::store::{AuditStore, StoreError};

            /// Unsealed entries chained per transaction by `seal_audit`.
            const SEAL_PAGE: usize = 1000;

            /// Rows per insert statement when appending many: 12 parameters each stays far
            /// below SQLite's limit of 32 766.
            const APPEND_CHUNK: usize = 500;

            /// Appends `entries` in order after the head, in a transaction holding the log's
            /// lock; returns the last id. Ids are taken first, so each row is written once
            /// with its hash, many per statement.
            async fn append(conn: &mut $connection, entries: &[AuditEntry]) -> Result<i64, StoreError> {
                let head: Option<Option<String>> =
                    sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
                        .fetch_optional(&mut *conn)
                        .await?;
                // An unsealed last entry (from before the chain) links as the start would:
                // verification names it, sealing at the next start chains it.
                let mut prev = head.flatten().unwrap_or_else(|| GENESIS.to_owned());
                let ids = $store::next_audit_ids(&mut *conn, entries.len()).await?;
                let mut rows = Vec::with_capacity(entries.len());
                for (entry, &id) in entries.iter().zip(&ids) {
                    let hash = entry_hash(&prev, id, entry);
                    rows.push((id, entry, std::mem::replace(&mut prev, hash.clone()), hash));
                }
                for chunk in rows.chunks(APPEND_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_log (id, at, requester, usage_point, series, \
                         range_start, range_end, grant_id, command, records, prev_hash, hash) ",
                    );
                    insert.push_values(chunk, |mut row, (id, entry, prev, hash)| {
                        row.push_bind(*id)
                            .push_bind(entry.at)
                            .push_bind(&entry.requester)
                            .push_bind(&entry.usage_point)
                            .push_bind(&entry.series)
                            .push_bind(entry.start)
                            .push_bind(entry.end)
                            .push_bind(entry.grant_id)
                            .push_bind(&entry.command)
                            .push_bind(entry.records)
                            .push_bind(prev)
                            .push_bind(hash);
                    });
                    insert.build().execute(&mut *conn).await?;
                }
                Ok(ids.last().copied().unwrap_or_default())
            }

            #[async_trait]
            impl AuditStore for $store {
                async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
                    let mut tx = self.begin_audit().await?;
                    let id = append(&mut tx, std::slice::from_ref(entry)).await?;
                    tx.commit().await?;
                    Ok(id)
                }

                async fn append_audits(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
                    if entries.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.begin_audit().await?;
                    append(&mut tx, entries).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn seal_audit(&self) -> Result<u64, StoreError> {
                    let mut sealed = 0;
                    loop {
                        let mut tx = self.begin_audit().await?;
                        let rows: Vec<ChainedAuditRow> = sqlx::query_as(&format!(
                            "SELECT {AUDIT_COLUMNS}, prev_hash, hash FROM audit_log \
                             WHERE hash IS NULL ORDER BY id LIMIT {SEAL_PAGE}"
                        ))
                        .fetch_all(&mut *tx)
                        .await?;
                        if rows.is_empty() {
                            return Ok(sealed);
                        }
                        for row in rows {
                            let e = ChainedEntry::from(row);
                            // Looked up per entry, not carried: with instances of two versions
                            // on one database, hashed entries may sit between unsealed ones.
                            let prev: Option<Option<String>> = sqlx::query_scalar(
                                "SELECT hash FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT 1",
                            )
                            .bind(e.id)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let prev = prev.flatten().unwrap_or_else(|| GENESIS.to_owned());
                            let hash = entry_hash(&prev, e.id, &e.entry);
                            sqlx::query(
                                "UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3",
                            )
                            .bind(&prev)
                            .bind(&hash)
                            .bind(e.id)
                            .execute(&mut *tx)
                            .await?;
                            sealed += 1;
                        }
                        tx.commit().await?;
                    }
                }

                async fn prune_audit(
                    &self,
                    before: i64,
                    now: i64,
                ) -> Result<Option<Checkpoint>, StoreError> {
                    let mut tx = self.begin_audit().await?;
                    let cut: Option<(i64, Option<String>)> = sqlx::query_as(
                        "SELECT id, hash FROM audit_log WHERE id = \
                         (SELECT max(id) FROM audit_log WHERE at < $1)",
                    )
                    .bind(before)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((last_id, last_hash)) = cut else {
                        return Ok(None);
                    };
                    // Unsealed entries are chained at start; a cut through them could not be
                    // vouched for, so it waits for the next round.
                    let Some(last_hash) = last_hash else {
                        return Ok(None);
                    };
                    let (pruned, first_id): (i64, Option<i64>) = sqlx::query_as(
                        "SELECT count(*), min(id) FROM audit_log WHERE id <= $1",
                    )
                    .bind(last_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let checkpoint = Checkpoint {
                        first_id: first_id.unwrap_or(last_id),
                        last_id,
                        pruned,
                        last_hash,
                    };
                    append(&mut tx, &[checkpoint.entry(now)]).await?;
                    sqlx::query("DELETE FROM audit_log WHERE id <= $1")
                        .bind(last_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(checkpoint))
                }

                async fn audit_chain(
                    &self,
                    after_id: i64,
                    limit: usize,
                ) -> Result<Vec<ChainedEntry>, StoreError> {
                    let rows: Vec<ChainedAuditRow> = sqlx::query_as(&format!(
                        "SELECT {AUDIT_COLUMNS}, prev_hash, hash FROM audit_log \
                         WHERE id > $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(after_id)
                    .bind(limit_to_sql(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
                    let row: Option<(i64, Option<String>)> =
                        sqlx::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(row.and_then(|(id, hash)| Some((id, hash?))))
                }

                async fn audit_entries(
                    &self,
                    after_id: i64,
                    limit: usize,
                ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
                    let rows: Vec<AuditRow> = sqlx::query_as(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(after_id)
                    .bind(limit_to_sql(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }
            }
        }
    };
}

pub(in crate::store) use impl_audit;
