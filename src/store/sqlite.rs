//! SQLite backend (embedded, WAL).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Sqlite, Transaction};

use super::rows::{
    grants_from_rows, unix_now, GrantRow, SeriesRow, UsagePointRow, GRANT_COLUMNS, SERIES_COLUMNS,
    USAGE_POINT_COLUMNS,
};
use super::{Store, StoreError};
use crate::model::{Grant, GrantOrigin, Series, UsagePoint};

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
        sqlx::query("DELETE FROM grants WHERE origin = ?")
            .bind(GrantOrigin::Config.as_str())
            .execute(&mut *tx)
            .await?;
        for grant in grants {
            // Stored as config whatever the caller set, or the next replacement would miss them
            // and they would pile up at every start.
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
}

#[cfg(test)]
mod tests {
    use super::is_memory;

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
