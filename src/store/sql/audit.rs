//! The SQL of the audit area ([`AuditStore`](crate::store::AuditStore)), the same on both
//! backends.

/// The [`AuditStore`](crate::store::AuditStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - nothing of its own: every statement is shared.
macro_rules! impl_audit {
    ($store:ident, $connection:ty) => {
        mod audit_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::AuditEntry;
            use $crate::store::common::limit_to_sql;
            use $crate::store::rows::{AuditRow, AUDIT_COLUMNS};
            use $crate::store::{AuditStore, StoreError};

            #[async_trait]
            impl AuditStore for $store {
                async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
                    let id = sqlx::query_scalar(
                        "INSERT INTO audit_log (at, requester, usage_point, series, range_start, \
                         range_end, grant_id, command, records) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    )
                    .bind(entry.at)
                    .bind(&entry.requester)
                    .bind(&entry.usage_point)
                    .bind(&entry.series)
                    .bind(entry.start)
                    .bind(entry.end)
                    .bind(entry.grant_id)
                    .bind(&entry.command)
                    .bind(entry.records)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(id)
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
