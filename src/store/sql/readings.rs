//! The SQL of the readings area ([`ReadingStore`](crate::store::ReadingStore)): readings and
//! items, the same on both backends but for the item id list.

/// Readings of one series in `[start, end)`: the scalar subquery resolves the series once, the
/// rest is one range scan of the readings primary key, already in time order (no sort).
pub(in crate::store) const READINGS_IN_RANGE: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     AND time >= $3 AND time < $4 ORDER BY time LIMIT $5";

pub(in crate::store) const COUNT_IN_RANGE: &str = "SELECT COUNT(*) FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     AND time >= $3 AND time < $4";

pub(in crate::store) const LAST_READING: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     ORDER BY time DESC LIMIT 1";

/// The `$3` newest items of a node.
pub(in crate::store) const ITEMS: &str = "SELECT item_id, published_at, payload FROM items \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     ORDER BY id DESC LIMIT $3";

/// The [`ReadingStore`](crate::store::ReadingStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write;
/// - `upsert_readings(conn, series_id, &[Reading]) -> Result<u64, StoreError>`: rows written;
/// - `item_id_list(&[String])`: a list as one bound parameter, and the statement `ITEMS_BY_ID`
///   (as [`ITEMS`], `$4` an item id list).
macro_rules! impl_readings {
    ($store:ident, $connection:ty) => {
        mod readings_sql {
            use async_trait::async_trait;

            use super::sql_helpers::series_id;
            use super::*;
            use $crate::model::{Batch, Item, Reading};
            use $crate::store::common::{count_from_sql, prepare_readings, sql_limit};
            use $crate::store::rows::{items_from_rows, reading_from_row, ItemRow, ReadingRow};
            use $crate::store::sql::readings::{
                COUNT_IN_RANGE, ITEMS, LAST_READING, READINGS_IN_RANGE,
            };
            use $crate::store::{ReadingStore, StoreError};

            #[async_trait]
            impl ReadingStore for $store {
                async fn insert_readings(&self, batch: &Batch) -> Result<usize, StoreError> {
                    let readings = prepare_readings(batch)?;
                    let mut tx = self.begin_write().await?;
                    let series_id = series_id(&mut tx, &batch.usage_point, &batch.series).await?;
                    let written = upsert_readings(&mut tx, series_id, &readings).await?;
                    tx.commit().await?;
                    Ok(usize::try_from(written).unwrap_or(usize::MAX))
                }

                async fn readings(
                    &self,
                    usage_point: &str,
                    series: &str,
                    start: i64,
                    end: i64,
                    limit: Option<usize>,
                ) -> Result<Vec<Reading>, StoreError> {
                    let rows: Vec<ReadingRow> = sqlx::query_as(READINGS_IN_RANGE)
                        .bind(usage_point)
                        .bind(series)
                        .bind(start)
                        .bind(end)
                        .bind(sql_limit(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(reading_from_row).collect())
                }

                async fn count_readings(
                    &self,
                    usage_point: &str,
                    series: &str,
                    start: i64,
                    end: i64,
                ) -> Result<u64, StoreError> {
                    let count: i64 = sqlx::query_scalar(COUNT_IN_RANGE)
                        .bind(usage_point)
                        .bind(series)
                        .bind(start)
                        .bind(end)
                        .fetch_one(&self.pool)
                        .await?;
                    count_from_sql(count)
                }

                async fn last_reading(
                    &self,
                    usage_point: &str,
                    series: &str,
                ) -> Result<Option<Reading>, StoreError> {
                    let row: Option<ReadingRow> = sqlx::query_as(LAST_READING)
                        .bind(usage_point)
                        .bind(series)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(reading_from_row))
                }

                async fn items(
                    &self,
                    usage_point: &str,
                    series: &str,
                    ids: Option<&[String]>,
                    limit: Option<usize>,
                ) -> Result<Vec<Item>, StoreError> {
                    let limit = sql_limit(limit);
                    let query = match ids {
                        Some(ids) => sqlx::query_as(ITEMS_BY_ID)
                            .bind(usage_point)
                            .bind(series)
                            .bind(limit)
                            .bind(item_id_list(ids)),
                        None => sqlx::query_as(ITEMS)
                            .bind(usage_point)
                            .bind(series)
                            .bind(limit),
                    };
                    let rows: Vec<ItemRow> = query.fetch_all(&self.pool).await?;
                    Ok(items_from_rows(usage_point, series, rows))
                }

                async fn last_item(
                    &self,
                    usage_point: &str,
                    series: &str,
                ) -> Result<Option<Item>, StoreError> {
                    Ok(self
                        .items(usage_point, series, None, Some(1))
                        .await?
                        .into_iter()
                        .next())
                }
            }
        }
    };
}

pub(in crate::store) use impl_readings;
