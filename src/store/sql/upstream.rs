//! The SQL of the upstream area ([`UpstreamStore`](crate::store::UpstreamStore)): the call log
//! and the per-day cache, the same on both backends.

/// The [`UpstreamStore`](crate::store::UpstreamStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write.
macro_rules! impl_upstream {
    ($store:ident, $connection:ty) => {
        mod upstream_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::UpstreamCall;
            use $crate::store::rows::{unix_now, UpstreamCallRow, UPSTREAM_CALL_COLUMNS};
            use $crate::store::{StoreError, UpstreamStore};

            #[async_trait]
            impl UpstreamStore for $store {
                async fn start_upstream_call(
                    &self,
                    call: &UpstreamCall,
                ) -> Result<i64, StoreError> {
                    let id = sqlx::query_scalar(
                        "INSERT INTO upstream_calls (source, api, usage_point, range_start, \
                         range_end, consent_id, requester, started_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(&call.source)
                    .bind(&call.api)
                    .bind(&call.usage_point)
                    .bind(&call.range_start)
                    .bind(&call.range_end)
                    .bind(call.consent_id)
                    .bind(&call.requester)
                    .bind(call.started_at)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(id)
                }

                async fn finish_upstream_call(
                    &self,
                    id: i64,
                    status: &str,
                    code: Option<&str>,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "UPDATE upstream_calls SET status = $1, code = $2, finished_at = $3 \
                         WHERE id = $4",
                    )
                    .bind(status)
                    .bind(code)
                    .bind(unix_now())
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn upstream_calls(
                    &self,
                    source: &str,
                    since: i64,
                ) -> Result<Vec<UpstreamCall>, StoreError> {
                    let rows: Vec<UpstreamCallRow> = sqlx::query_as(&format!(
                        "SELECT {UPSTREAM_CALL_COLUMNS} FROM upstream_calls WHERE source = $1 \
                         AND started_at >= $2 ORDER BY id"
                    ))
                    .bind(source)
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(UpstreamCall::from).collect())
                }

                async fn fetched_days(
                    &self,
                    usage_point: &str,
                    api: &str,
                    first: &str,
                    end: &str,
                ) -> Result<Vec<String>, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT day FROM fetched_days WHERE usage_point = $1 AND api = $2 \
                         AND day >= $3 AND day < $4 ORDER BY day",
                    )
                    .bind(usage_point)
                    .bind(api)
                    .bind(first)
                    .bind(end)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn mark_fetched(
                    &self,
                    usage_point: &str,
                    api: &str,
                    days: &[String],
                    at: i64,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
                    for day in days {
                        sqlx::query(
                            "INSERT INTO fetched_days (usage_point, api, day, fetched_at) \
                             VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (usage_point, api, day) DO NOTHING",
                        )
                        .bind(usage_point)
                        .bind(api)
                        .bind(day)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            }
        }
    };
}

pub(in crate::store) use impl_upstream;
