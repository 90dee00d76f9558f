//! SQLite backend (embedded, WAL).

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Sqlite, Transaction};

use super::common::{
    count_from_sql, limit_to_sql, plan_config_grants, prepare_readings, ConfigGrantPlan,
};
use super::rows::{
    grants_from_rows, reading_from_row, unix_now, AuditRow, GrantRow, ReadingRow, SeriesRow,
    UsagePointRow, AUDIT_COLUMNS, GRANT_COLUMNS, SERIES_COLUMNS, USAGE_POINT_COLUMNS,
};
use super::{Store, StoreError};
use crate::model::{AuditEntry, Batch, Grant, GrantOrigin, Reading, Series, UsagePoint};

/// Readers proceed during a write in WAL mode; writes are serialised by SQLite anyway, so a few
/// connections are enough.
const MAX_CONNECTIONS: u32 = 4;

/// The store in one SQLite file (or in memory, for tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite:///abs/path.db` (creating the file and its directory) or `sqlite::memory:`,
    /// and applies pending migrations.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = if is_memory(url) {
            // An in-memory database lives as long as its last connection: the pool must hold
            // exactly one and never recycle it, or the data (and the schema) would vanish.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?
        } else {
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
            }
            SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .connect_with(options.journal_mode(SqliteJournalMode::Wal))
                .await?
        };
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock up front, waiting up to the
    /// busy timeout; a deferred transaction that reads first fails at once with SQLITE_BUSY when
    /// it tries to upgrade while another connection writes.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// True for the URL forms that sqlx maps to an in-memory database.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

async fn insert_grant(
    conn: &mut SqliteConnection,
    grant: &Grant,
    origin: GrantOrigin,
    now: i64,
) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO grants (subject, usage_point, series, valid_from, valid_until, origin, \
         purpose, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&grant.subject)
    .bind(&grant.usage_point)
    .bind(&grant.series)
    .bind(grant.valid_from)
    .bind(grant.valid_until)
    .bind(origin.as_str())
    .bind(&grant.purpose)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Largest number of rows in one upsert statement: 2 parameters per row plus the series id stay
/// far below SQLite's 32766 bound parameters, and a statement this size already amortises the
/// per-statement cost. A power of two, see [`upsert_chunk_len`].
const MAX_UPSERT_ROWS: usize = 512;

/// How many of `remaining` readings the next upsert statement takes: 512 at a time, then the
/// largest power of two that fits. Statements thus come in ten sizes only, each prepared once and
/// kept in the connection's statement cache, whatever the batch sizes.
fn upsert_chunk_len(remaining: usize) -> usize {
    if remaining >= MAX_UPSERT_ROWS {
        MAX_UPSERT_ROWS
    } else if remaining == 0 {
        0
    } else {
        1 << remaining.ilog2()
    }
}

/// The upsert of `rows` readings of one series: `?1` is the series id, then time and value of each
/// row. The `WHERE` skips rows whose value is unchanged, so re-sending stored readings writes no
/// page and counts no row.
fn upsert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MAX_UPSERT_ROWS.ilog2())
            .map(|log| {
                let values: Vec<String> = (0..1usize << log)
                    .map(|i| format!("(?1, ?{}, ?{})", 2 * i + 2, 2 * i + 3))
                    .collect();
                format!(
                    "INSERT INTO readings (series_id, time, value) VALUES {} \
                     ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value \
                     WHERE readings.value <> excluded.value",
                    values.join(", ")
                )
            })
            .collect()
    });
    // Called with a power of two up to MAX_UPSERT_ROWS, which has its statement.
    let index = (rows.max(1).ilog2() as usize).min(all.len() - 1);
    &all[index]
}

/// The id of a series, which readings reference.
const SERIES_ID: &str = "SELECT id FROM series WHERE usage_point = ? AND path = ?";

/// Readings of one series in `[start, end)`. The scalar subquery resolves the series once; the
/// rest is one range scan of the readings primary key, already in time order (no sort).
const READINGS_IN_RANGE: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = ? AND path = ?) \
     AND time >= ? AND time < ? ORDER BY time LIMIT ?";

const COUNT_IN_RANGE: &str = "SELECT COUNT(*) FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = ? AND path = ?) \
     AND time >= ? AND time < ?";

const LAST_READING: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = ? AND path = ?) \
     ORDER BY time DESC LIMIT 1";

#[async_trait]
impl Store for SqliteStore {
    async fn declare_usage_point(
        &self,
        up: &UsagePoint,
        series: &[Series],
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.begin_write().await?;
        // The WHERE makes an upsert over another source's usage point a no-op, detected by the
        // row count, so ownership is checked and the row written in one statement.
        let written = sqlx::query(
            "INSERT INTO usage_points (id, source, device_type, identifier_authority, \
             identifier_kind, identifier_value, name, online, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
            let owner = sqlx::query_scalar("SELECT source FROM usage_points WHERE id = ?")
                .bind(&up.id)
                .fetch_one(&mut *tx)
                .await?;
            return Err(StoreError::Conflict {
                id: up.id.clone(),
                owner,
            });
        }
        for s in series {
            // Keyed by `up.id`, not `s.usage_point`: the ownership check above covers `up.id`
            // only.
            sqlx::query(
                "INSERT INTO series (usage_point, path, title, measurement_name, direction, \
                 quantity, kind, unit, aggregation, sampling_interval, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (usage_point, path) DO UPDATE SET title = excluded.title, \
                 measurement_name = excluded.measurement_name, direction = excluded.direction, \
                 quantity = excluded.quantity, kind = excluded.kind, unit = excluded.unit, \
                 aggregation = excluded.aggregation, \
                 sampling_interval = excluded.sampling_interval, updated_at = excluded.updated_at",
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
        let changed =
            sqlx::query("UPDATE usage_points SET online = ?, updated_at = ? WHERE id = ?")
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
            "SELECT {USAGE_POINT_COLUMNS} FROM usage_points WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(UsagePoint::from))
    }

    async fn usage_points(&self, source: Option<&str>) -> Result<Vec<UsagePoint>, StoreError> {
        let rows: Vec<UsagePointRow> = match source {
            Some(source) => {
                sqlx::query_as(&format!(
                    "SELECT {USAGE_POINT_COLUMNS} FROM usage_points WHERE source = ? ORDER BY id"
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
            "SELECT {SERIES_COLUMNS} FROM series WHERE usage_point = ? ORDER BY path"
        ))
        .bind(usage_point)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Series::from).collect())
    }

    async fn replace_config_grants(&self, grants: &[Grant]) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.begin_write().await?;
        let rows: Vec<GrantRow> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE origin = ? AND revoked_at IS NULL \
             ORDER BY id"
        ))
        .bind(GrantOrigin::Config.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let existing = grants_from_rows(rows)?;
        let ConfigGrantPlan { revoke, insert } = plan_config_grants(&existing, grants);
        for id in revoke {
            sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for grant in insert {
            // Stored as config whatever the caller set, or the next reconciliation would miss
            // them and they would pile up at every start.
            insert_grant(&mut tx, grant, GrantOrigin::Config, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_grant(&self, grant: &Grant) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_grant(&mut conn, grant, grant.origin, unix_now()).await
    }

    async fn revoke_grant(&self, id: i64) -> Result<bool, StoreError> {
        let changed =
            sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(unix_now())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(changed > 0)
    }

    async fn grants_for(&self, subject: &str) -> Result<Vec<Grant>, StoreError> {
        let rows: Vec<GrantRow> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE subject = ? AND revoked_at IS NULL \
             ORDER BY id"
        ))
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        grants_from_rows(rows)
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let rows: Vec<GrantRow> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        grants_from_rows(rows)
    }

    async fn insert_readings(&self, batch: &Batch) -> Result<usize, StoreError> {
        let readings = prepare_readings(batch)?;
        let mut tx = self.begin_write().await?;
        let series_id: i64 = sqlx::query_scalar(SERIES_ID)
            .bind(&batch.usage_point)
            .bind(&batch.series)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownSeries {
                usage_point: batch.usage_point.clone(),
                series: batch.series.clone(),
            })?;
        let mut written = 0;
        let mut rest = readings.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(upsert_chunk_len(rest.len()));
            let mut query = sqlx::query(upsert_sql(chunk.len())).bind(series_id);
            for r in chunk {
                query = query.bind(r.time).bind(r.value);
            }
            written += query.execute(&mut *tx).await?.rows_affected();
            rest = tail;
        }
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
        // A negative LIMIT is SQLite's "no limit".
        let limit = limit.map_or(-1, limit_to_sql);
        let rows: Vec<ReadingRow> = sqlx::query_as(READINGS_IN_RANGE)
            .bind(usage_point)
            .bind(series)
            .bind(start)
            .bind(end)
            .bind(limit)
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

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO audit_log (at, requester, usage_point, series, range_start, range_end, \
             grant_id, command, records) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after_id)
        .bind(limit_to_sql(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_chunks_come_in_few_sizes() {
        let mut sizes = Vec::new();
        let mut remaining = 1234;
        while remaining > 0 {
            let n = upsert_chunk_len(remaining);
            sizes.push(n);
            remaining -= n;
        }
        assert_eq!(sizes, [512, 512, 128, 64, 16, 2]);
        assert_eq!(upsert_chunk_len(0), 0);
        assert_eq!(upsert_chunk_len(1), 1);
        assert_eq!(upsert_chunk_len(511), 256);
        assert!(upsert_sql(1).contains("VALUES (?1, ?2, ?3) ON CONFLICT"));
        assert!(upsert_sql(512).contains("(?1, ?1024, ?1025) ON CONFLICT"));
    }

    /// The plans SQLite picks: one-year queries must be range scans of the primary key, with
    /// no sort and no full scan.
    #[tokio::test]
    async fn range_queries_scan_the_primary_key() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for sql in [READINGS_IN_RANGE, COUNT_IN_RANGE, LAST_READING] {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            assert!(
                plan.iter()
                    .any(|step| step.starts_with("SEARCH readings USING PRIMARY KEY (series_id=?")),
                "{sql}: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.starts_with("SEARCH series USING COVERING INDEX")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|step| step.contains("TEMP B-TREE") || step.starts_with("SCAN")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn memory_urls() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://?mode=memory"));
        assert!(is_memory("sqlite://?cache=shared&mode=memory"));
        assert!(!is_memory("sqlite:///var/lib/q/quoalise.db"));
        assert!(!is_memory("sqlite:///var/lib/q/quoalise.db?mode=rwc"));
    }
}
