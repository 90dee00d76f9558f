//! The SQL of the usage points area ([`UsagePointStore`](crate::store::UsagePointStore)), the
//! same on both backends.

/// The [`UsagePointStore`](crate::store::UsagePointStore) implementation of `$store`, a backend
/// whose connections are `$connection`, as a child module of the backend (`use super::*`),
/// which provides:
/// - `$store::begin_write(&self)`: a transaction that may write.
macro_rules! impl_usage_points {
    ($store:ident, $connection:ty) => {
        mod usage_points_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::{Series, UsagePoint};
            use $crate::store::rows::{
                unix_now, SeriesRow, UsagePointRow, SERIES_COLUMNS, USAGE_POINT_COLUMNS,
            };
            use $crate::store::{StoreError, UsagePointStore};

            #[async_trait]
            impl UsagePointStore for $store {
                async fn declare_usage_point(
                    &self,
                    up: &UsagePoint,
                    series: &[Series],
                ) -> Result<(), StoreError> {
                    let now = unix_now();
                    let mut tx = self.begin_write().await?;
                    // The WHERE makes an upsert over another source's usage point a no-op, detected
                    // by the row count, so ownership is checked and the row written in one
                    // statement.
                    let written = sqlx::query(
                        "INSERT INTO usage_points (id, source, device_type, identifier_authority, \
                         identifier_kind, identifier_value, name, online, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (id) DO UPDATE SET device_type = excluded.device_type, \
                         identifier_authority = excluded.identifier_authority, \
                         identifier_kind = excluded.identifier_kind, \
                         identifier_value = excluded.identifier_value, name = excluded.name, \
                         online = excluded.online, updated_at = excluded.updated_at \
                         WHERE usage_points.source = excluded.source",
                    )
                    .bind(&up.id)
                    .bind(&up.source)
                    .bind(&up.device_type)
                    .bind(&up.identifier.authority)
                    .bind(&up.identifier.kind)
                    .bind(&up.identifier.value)
                    .bind(&up.name)
                    .bind(up.online)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if written == 0 {
                        let owner =
                            sqlx::query_scalar("SELECT source FROM usage_points WHERE id = $1")
                                .bind(&up.id)
                                .fetch_one(&mut *tx)
                                .await?;
                        return Err(StoreError::Conflict {
                            id: up.id.clone(),
                            owner,
                        });
                    }
                    for s in series {
                        // Keyed by `up.id`, not `s.usage_point`: the ownership check above covers
                        // `up.id` only.
                        sqlx::query(
                            "INSERT INTO series (usage_point, path, title, measurement_name, \
                             direction, quantity, kind, unit, aggregation, sampling_interval, \
                             created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                             ON CONFLICT (usage_point, path) DO UPDATE \
                             SET title = excluded.title, \
                             measurement_name = excluded.measurement_name, \
                             direction = excluded.direction, quantity = excluded.quantity, \
                             kind = excluded.kind, unit = excluded.unit, \
                             aggregation = excluded.aggregation, \
                             sampling_interval = excluded.sampling_interval, \
                             updated_at = excluded.updated_at",
                        )
                        .bind(&up.id)
                        .bind(&s.path)
                        .bind(&s.title)
                        .bind(&s.measurement.name)
                        .bind(&s.measurement.direction)
                        .bind(&s.measurement.quantity)
                        .bind(&s.measurement.kind)
                        .bind(&s.measurement.unit)
                        .bind(&s.measurement.aggregation)
                        .bind(&s.measurement.sampling_interval)
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_online(&self, id: &str, online: bool) -> Result<bool, StoreError> {
                    let changed = sqlx::query(
                        "UPDATE usage_points SET online = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(online)
                    .bind(unix_now())
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    Ok(changed > 0)
                }

                async fn usage_point(&self, id: &str) -> Result<Option<UsagePoint>, StoreError> {
                    let row: Option<UsagePointRow> = sqlx::query_as(&format!(
                        "SELECT {USAGE_POINT_COLUMNS} FROM usage_points WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(UsagePoint::from))
                }

                async fn usage_points(
                    &self,
                    source: Option<&str>,
                ) -> Result<Vec<UsagePoint>, StoreError> {
                    let rows: Vec<UsagePointRow> = match source {
                        Some(source) => {
                            sqlx::query_as(&format!(
                                "SELECT {USAGE_POINT_COLUMNS} FROM usage_points WHERE source = $1 \
                                 ORDER BY id"
                            ))
                            .bind(source)
                            .fetch_all(&self.pool)
                            .await?
                        }
                        None => {
                            sqlx::query_as(&format!(
                                "SELECT {USAGE_POINT_COLUMNS} FROM usage_points ORDER BY id"
                            ))
                            .fetch_all(&self.pool)
                            .await?
                        }
                    };
                    Ok(rows.into_iter().map(UsagePoint::from).collect())
                }

                async fn series(&self, usage_point: &str) -> Result<Vec<Series>, StoreError> {
                    let rows: Vec<SeriesRow> = sqlx::query_as(&format!(
                        "SELECT {SERIES_COLUMNS} FROM series WHERE usage_point = $1 ORDER BY path"
                    ))
                    .bind(usage_point)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(Series::from).collect())
                }
            }
        }
    };
}

pub(in crate::store) use impl_usage_points;
