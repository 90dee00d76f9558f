//! PostgreSQL backend (shared by several component instances).

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use super::rows::{
    grants_from_rows, unix_now, GrantRow, SeriesRow, UsagePointRow, GRANT_COLUMNS, SERIES_COLUMNS,
    USAGE_POINT_COLUMNS,
};
use super::{Store, StoreError};
use crate::model::{Grant, GrantOrigin, Series, UsagePoint};

/// Per instance; several instances share the server, whose default limit is 100 connections.
const MAX_CONNECTIONS: u32 = 8;

/// The store in a PostgreSQL database, possibly shared with other instances of the component.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` and applies pending migrations. Instances starting together
    /// are safe: sqlx's migrator holds an advisory lock while it migrates, so the others wait and
    /// then find nothing left to apply.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

async fn insert_grant(
    conn: &mut PgConnection,
    grant: &Grant,
    origin: GrantOrigin,
    now: i64,
) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO grants (subject, usage_point, series, valid_from, valid_until, origin, \
         purpose, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
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
impl Store for PostgresStore {
    async fn declare_usage_point(
        &self,
        up: &UsagePoint,
        series: &[Series],
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        // The WHERE makes an upsert over another source's usage point a no-op, detected by the
        // row count, so ownership is checked and the row written in one statement.
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
            let owner = sqlx::query_scalar("SELECT source FROM usage_points WHERE id = $1")
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
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
            sqlx::query("UPDATE usage_points SET online = $1, updated_at = $2 WHERE id = $3")
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

    async fn usage_points(&self, source: Option<&str>) -> Result<Vec<UsagePoint>, StoreError> {
        let rows: Vec<UsagePointRow> = match source {
            Some(source) => {
                sqlx::query_as(&format!(
                    "SELECT {USAGE_POINT_COLUMNS} FROM usage_points WHERE source = $1 ORDER BY id"
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

    async fn replace_config_grants(&self, grants: &[Grant]) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM grants WHERE origin = $1")
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
            sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(unix_now())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(changed > 0)
    }

    async fn grants_for(&self, subject: &str) -> Result<Vec<Grant>, StoreError> {
        let rows: Vec<GrantRow> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE subject = $1 AND revoked_at IS NULL \
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
