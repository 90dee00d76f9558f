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
    count_from_sql, jid_range, limit_to_sql, plan_config_grants, prepare_readings, ConfigGrantPlan,
};
use super::rows::{
    grants_from_rows, items_from_rows, outbox_from_rows, reading_from_row, subscriptions_from_rows,
    unix_now, AuditRow, GrantRow, ItemRow, OutboxRow, ReadingRow, SeriesRow, SubscriptionRow,
    UsagePointRow, AUDIT_COLUMNS, GRANT_COLUMNS, OUTBOX_COLUMNS, SERIES_COLUMNS,
    SUBSCRIPTION_COLUMNS, USAGE_POINT_COLUMNS,
};
use super::rows::{
    ConsentRequestRow, ConsentRow, OAuthStateRow, UpstreamCallRow, CONSENT_COLUMNS,
    CONSENT_REQUEST_COLUMNS, OAUTH_STATE_COLUMNS, UPSTREAM_CALL_COLUMNS,
};
use super::{Store, StoreError};
use crate::model::{
    AuditEntry, Batch, Consent, ConsentRequest, Grant, GrantOrigin, Item, OAuthState, OutboxEntry,
    Reading, Series, Subscription, SubscriptionKind, UpstreamCall, UsagePoint,
};

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

/// Largest number of rows in one multi-row statement (readings upsert, outbox insert): at most 3
/// parameters per row stay far below SQLite's 32766 bound parameters, and a statement this size
/// already amortises the per-statement cost. A power of two, see [`chunk_len`].
const MAX_ROWS: usize = 512;

/// How many of `remaining` rows the next multi-row statement takes: 512 at a time, then the
/// largest power of two that fits. Statements thus come in ten sizes only, each prepared once and
/// kept in the connection's statement cache, whatever the batch sizes.
fn chunk_len(remaining: usize) -> usize {
    if remaining >= MAX_ROWS {
        MAX_ROWS
    } else if remaining == 0 {
        0
    } else {
        1 << remaining.ilog2()
    }
}

/// The ten statements of a multi-row insert, one per power of two up to [`MAX_ROWS`]: `head`,
/// then `row(i)` for each row joined by commas, then `tail`.
fn multi_row_statements(head: &str, row: impl Fn(usize) -> String, tail: &str) -> Vec<String> {
    (0..=MAX_ROWS.ilog2())
        .map(|log| {
            let rows: Vec<String> = (0..1usize << log).map(&row).collect();
            format!("{head}{}{tail}", rows.join(", "))
        })
        .collect()
}

/// The statement of `all` (from [`multi_row_statements`]) for `rows`, a power of two up to
/// [`MAX_ROWS`] as [`chunk_len`] gives.
fn statement_for(all: &[String], rows: usize) -> &str {
    let index = (rows.max(1).ilog2() as usize).min(all.len() - 1);
    &all[index]
}

/// The upsert of `rows` readings of one series: `?1` is the series id, then time and value of each
/// row. The `WHERE` skips rows whose value is unchanged, so re-sending stored readings writes no
/// page and counts no row.
fn upsert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT INTO readings (series_id, time, value) VALUES ",
            |i| format!("(?1, ?{}, ?{})", 2 * i + 2, 2 * i + 3),
            " ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value \
             WHERE readings.value <> excluded.value",
        )
    });
    statement_for(all, rows)
}

/// The insert of `rows` outbox entries: `?1` is the creation time, then subscription id and
/// stanza of each row.
fn outbox_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT INTO outbox (subscription_id, stanza, created_at) VALUES ",
            |i| format!("(?{}, ?{}, ?1)", 2 * i + 2, 2 * i + 3),
            " RETURNING id",
        )
    });
    statement_for(all, rows)
}

/// A JSON array of strings, for `json_each`: one bound parameter whatever the list length.
fn json_strings(items: &[String]) -> String {
    let mut json = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        for c in item.chars() {
            match c {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                c if u32::from(c) < 0x20 => json.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => json.push(c),
            }
        }
        json.push('"');
    }
    json.push(']');
    json
}

/// A JSON array of integers, for `json_each`.
fn json_ints(ids: &[i64]) -> String {
    let items: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
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

/// Adds a subscription, or returns the existing one unchanged (the no-op update makes
/// `RETURNING` give the stored row): idempotent in one statement. No row at all means the series
/// does not exist.
const SUBSCRIBE: &str = "INSERT INTO subscriptions (kind, usage_point, series, jid, subid, \
     created_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
     WHERE EXISTS (SELECT 1 FROM series WHERE usage_point = ?2 AND path = ?3) \
     ON CONFLICT (usage_point, series, kind, jid) DO UPDATE SET subid = subscriptions.subid \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

const UNSUBSCRIBE: &str = "DELETE FROM subscriptions \
     WHERE usage_point = ?1 AND kind = ?2 AND jid = ?3 \
     AND (?4 IS NULL OR series = ?4) AND (?5 IS NULL OR subid = ?5) \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

const REMOVE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = ? \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

const SUBSCRIBERS: &str = "SELECT id, kind, usage_point, series, jid, subid, created_at \
     FROM subscriptions WHERE usage_point = ? AND series = ? ORDER BY id";

/// `?1` the bare JID, `?2`..`?3` the range of its full JIDs (see `jid_range`), `?4` an optional
/// usage point.
const SUBSCRIPTIONS_OF: &str = "SELECT id, kind, usage_point, series, jid, subid, created_at \
     FROM subscriptions WHERE (jid = ?1 OR (jid >= ?2 AND jid < ?3)) \
     AND (?4 IS NULL OR usage_point = ?4) ORDER BY id";

/// Republishing an item id replaces the item; delete and insert give it a new row id, the
/// newest. SQLite has a single writer, so the pair cannot race.
const DELETE_ITEM: &str = "DELETE FROM items WHERE series_id = ? AND item_id = ?";

const INSERT_ITEM: &str =
    "INSERT INTO items (series_id, item_id, published_at, payload) VALUES (?, ?, ?, ?)";

/// Keeps the `?2` newest items of series `?1`: deletes from the (`?2` + 1)-th newest down. No
/// such item, nothing deleted (`id <= NULL` is never true).
const TRIM_ITEMS: &str = "DELETE FROM items WHERE series_id = ?1 AND id <= \
     (SELECT id FROM items WHERE series_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)";

const ITEMS: &str = "SELECT item_id, published_at, payload FROM items \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = ?1 AND path = ?2) \
     ORDER BY id DESC LIMIT ?3";

/// `?4` a JSON array of item ids.
const ITEMS_BY_ID: &str = "SELECT item_id, published_at, payload FROM items \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = ?1 AND path = ?2) \
     AND item_id IN (SELECT value FROM json_each(?4)) ORDER BY id DESC LIMIT ?3";

/// Claims due pending entries, oldest first: one statement, so atomic under SQLite's write lock
/// (two processes on one file claim disjoint sets too). `?1` the new claim end, `?2` now, `?3`
/// the limit.
const CLAIM_OUTBOX: &str = "UPDATE outbox SET claimed_until = ?1 WHERE id IN \
     (SELECT id FROM outbox WHERE sent_at IS NULL AND not_before <= ?2 \
      AND (claimed_until IS NULL OR claimed_until <= ?2) ORDER BY id LIMIT ?3) \
     RETURNING id, subscription_id, stanza, attempts, not_before";

/// `?2` a JSON array of ids.
const MARK_SENT: &str = "UPDATE outbox SET sent_at = ?1, claimed_until = NULL \
     WHERE id IN (SELECT value FROM json_each(?2)) AND sent_at IS NULL";

/// `?1` a JSON array of ids.
const RELEASE: &str = "UPDATE outbox SET claimed_until = NULL \
     WHERE id IN (SELECT value FROM json_each(?1)) AND sent_at IS NULL AND claimed_until IS NOT NULL";

const RETRY_LATER: &str = "UPDATE outbox SET sent_at = NULL, claimed_until = NULL, \
     attempts = attempts + 1, not_before = ? WHERE id = ?";

const DISCARD_PENDING: &str = "DELETE FROM outbox WHERE subscription_id = ? AND sent_at IS NULL";

const PURGE_SENT: &str = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?";

const PENDING_COUNT: &str = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

/// The id of series (`usage_point`, `series`), or [`StoreError::UnknownSeries`].
async fn series_id(
    conn: &mut SqliteConnection,
    usage_point: &str,
    series: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(SERIES_ID)
        .bind(usage_point)
        .bind(series)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownSeries {
            usage_point: usage_point.to_owned(),
            series: series.to_owned(),
        })
}

/// Writes prepared readings of one series; returns how many rows were inserted or changed.
async fn upsert_readings(
    conn: &mut SqliteConnection,
    series_id: i64,
    readings: &[Reading],
) -> Result<u64, StoreError> {
    let mut written = 0;
    let mut rest = readings;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        let mut query = sqlx::query(upsert_sql(chunk.len())).bind(series_id);
        for r in chunk {
            query = query.bind(r.time).bind(r.value);
        }
        written += query.execute(&mut *conn).await?.rows_affected();
        rest = tail;
    }
    Ok(written)
}

/// Queues stanzas; returns their ids in order.
async fn insert_outbox(
    conn: &mut SqliteConnection,
    outbox: &[(Option<i64>, String)],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(outbox.len());
    let mut rest = outbox;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        let mut query = sqlx::query_scalar(outbox_insert_sql(chunk.len())).bind(now);
        for (subscription, stanza) in chunk {
            query = query.bind(*subscription).bind(stanza);
        }
        // Rows of one statement get increasing ids in VALUES order; RETURNING promises no order.
        let mut chunk_ids: Vec<i64> = query.fetch_all(&mut *conn).await?;
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
        rest = tail;
    }
    Ok(ids)
}

/// Stores an item on its node (replacing one with the same item id) and trims the node.
async fn put_item(
    conn: &mut SqliteConnection,
    series_id: i64,
    item: &Item,
    max_items: usize,
) -> Result<(), StoreError> {
    sqlx::query(DELETE_ITEM)
        .bind(series_id)
        .bind(&item.item_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(INSERT_ITEM)
        .bind(series_id)
        .bind(&item.item_id)
        .bind(item.published_at)
        .bind(&item.payload)
        .execute(&mut *conn)
        .await?;
    sqlx::query(TRIM_ITEMS)
        .bind(series_id)
        .bind(limit_to_sql(max_items))
        .execute(&mut *conn)
        .await?;
    Ok(())
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
    async fn subscribe(
        &self,
        kind: SubscriptionKind,
        usage_point: &str,
        series: &str,
        jid: &str,
        subid: &str,
    ) -> Result<Subscription, StoreError> {
        let row: Option<SubscriptionRow> = sqlx::query_as(SUBSCRIBE)
            .bind(kind.as_str())
            .bind(usage_point)
            .bind(series)
            .bind(jid)
            .bind(subid)
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => row.try_into(),
            None => Err(StoreError::UnknownSeries {
                usage_point: usage_point.to_owned(),
                series: series.to_owned(),
            }),
        }
    }

    async fn unsubscribe(
        &self,
        kind: SubscriptionKind,
        usage_point: &str,
        series: Option<&str>,
        jid: &str,
        subid: Option<&str>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(UNSUBSCRIBE)
            .bind(usage_point)
            .bind(kind.as_str())
            .bind(jid)
            .bind(series)
            .bind(subid)
            .fetch_all(&self.pool)
            .await?;
        subscriptions_from_rows(rows)
    }

    async fn remove_subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = sqlx::query_as(REMOVE_SUBSCRIPTION)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Subscription::try_from).transpose()
    }

    async fn subscribers(
        &self,
        usage_point: &str,
        series: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(SUBSCRIBERS)
            .bind(usage_point)
            .bind(series)
            .fetch_all(&self.pool)
            .await?;
        subscriptions_from_rows(rows)
    }

    async fn subscriptions_of(
        &self,
        bare_jid: &str,
        usage_point: Option<&str>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (from, to) = jid_range(bare_jid);
        let rows: Vec<SubscriptionRow> = sqlx::query_as(SUBSCRIPTIONS_OF)
            .bind(bare_jid)
            .bind(from)
            .bind(to)
            .bind(usage_point)
            .fetch_all(&self.pool)
            .await?;
        subscriptions_from_rows(rows)
    }

    async fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        subscriptions_from_rows(rows)
    }

    async fn publish(
        &self,
        batch: &Batch,
        item: Option<&Item>,
        outbox: &[(Option<i64>, String)],
        max_items: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let readings = prepare_readings(batch)?;
        let now = unix_now();
        let mut tx = self.begin_write().await?;
        let batch_series = series_id(&mut tx, &batch.usage_point, &batch.series).await?;
        upsert_readings(&mut tx, batch_series, &readings).await?;
        if let Some(item) = item {
            let item_series =
                if item.usage_point == batch.usage_point && item.series == batch.series {
                    batch_series
                } else {
                    series_id(&mut tx, &item.usage_point, &item.series).await?
                };
            put_item(&mut tx, item_series, item, max_items).await?;
        }
        let ids = insert_outbox(&mut tx, outbox, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn enqueue(&self, outbox: &[(Option<i64>, String)]) -> Result<Vec<i64>, StoreError> {
        if outbox.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let ids = insert_outbox(&mut tx, outbox, unix_now()).await?;
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
            .bind(json_ints(ids))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(RELEASE)
            .bind(json_ints(ids))
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
        let row: Option<OutboxRow> =
            sqlx::query_as(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"))
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

    async fn items(
        &self,
        usage_point: &str,
        series: &str,
        ids: Option<&[String]>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        // A negative LIMIT is SQLite's "no limit".
        let limit = limit.map_or(-1, limit_to_sql);
        let query = match ids {
            Some(ids) => sqlx::query_as(ITEMS_BY_ID)
                .bind(usage_point)
                .bind(series)
                .bind(limit)
                .bind(json_strings(ids)),
            None => sqlx::query_as(ITEMS)
                .bind(usage_point)
                .bind(series)
                .bind(limit),
        };
        let rows: Vec<ItemRow> = query.fetch_all(&self.pool).await?;
        Ok(items_from_rows(usage_point, series, rows))
    }

    async fn last_item(&self, usage_point: &str, series: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .items(usage_point, series, None, Some(1))
            .await?
            .into_iter()
            .next())
    }

    async fn add_consent_request(&self, request: &ConsentRequest) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consent_requests (id, source, app_jid, name, logo_url, description, \
             redirect_uri, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&request.id)
        .bind(&request.source)
        .bind(&request.app_jid)
        .bind(&request.name)
        .bind(&request.logo_url)
        .bind(&request.description)
        .bind(&request.redirect_uri)
        .bind(request.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn consent_request(&self, id: &str) -> Result<Option<ConsentRequest>, StoreError> {
        let row: Option<ConsentRequestRow> = sqlx::query_as(&format!(
            "SELECT {CONSENT_REQUEST_COLUMNS} FROM consent_requests WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(ConsentRequest::from))
    }

    async fn count_consent_requests(&self, app_jid: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consent_requests WHERE app_jid = ?")
            .bind(app_jid)
            .fetch_one(&self.pool)
            .await?;
        count_from_sql(n)
    }

    async fn add_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_states (state, request_id, duration, app_state, redirect_uri, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state.state)
        .bind(&state.request_id)
        .bind(&state.duration)
        .bind(&state.app_state)
        .bind(&state.redirect_uri)
        .bind(state.created_at)
        .bind(state.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Option<OAuthState>, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let row: Option<OAuthStateRow> = sqlx::query_as(&format!(
            "DELETE FROM oauth_states WHERE state = ? RETURNING {OAUTH_STATE_COLUMNS}"
        ))
        .bind(state)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(OAuthState::from))
    }

    async fn record_consent(
        &self,
        consent: &Consent,
        grant: &Grant,
    ) -> Result<(i64, i64), StoreError> {
        let now = unix_now();
        let mut tx = self.begin_write().await?;
        let grant_id = insert_grant(&mut tx, grant, grant.origin, now).await?;
        let consent_id = sqlx::query_scalar(
            "INSERT INTO consents (source, usage_point, app_jid, purpose, request_id, reference, \
             begins_at, expires_at, grant_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&consent.source)
        .bind(&consent.usage_point)
        .bind(&consent.app_jid)
        .bind(&consent.purpose)
        .bind(&consent.request_id)
        .bind(&consent.reference)
        .bind(consent.begins_at)
        .bind(consent.expires_at)
        .bind(grant_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((consent_id, grant_id))
    }

    async fn active_consents(&self, source: &str, now: i64) -> Result<Vec<Consent>, StoreError> {
        let rows: Vec<ConsentRow> = sqlx::query_as(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE source = ? AND revoked_at IS NULL \
             AND begins_at <= ? AND ? < expires_at ORDER BY id"
        ))
        .bind(source)
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Consent::from).collect())
    }

    async fn revoke_consents(&self, usage_point: &str) -> Result<Vec<Consent>, StoreError> {
        let now = unix_now();
        let mut tx = self.begin_write().await?;
        let rows: Vec<ConsentRow> = sqlx::query_as(&format!(
            "UPDATE consents SET revoked_at = ? WHERE usage_point = ? AND revoked_at IS NULL \
             RETURNING {CONSENT_COLUMNS}"
        ))
        .bind(now)
        .bind(usage_point)
        .fetch_all(&mut *tx)
        .await?;
        let consents: Vec<Consent> = rows.into_iter().map(Consent::from).collect();
        for grant_id in consents.iter().filter_map(|c| c.grant_id) {
            sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(grant_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(consents)
    }

    async fn start_upstream_call(&self, call: &UpstreamCall) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO upstream_calls (source, api, usage_point, range_start, range_end, \
             consent_id, requester, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        sqlx::query("UPDATE upstream_calls SET status = ?, code = ?, finished_at = ? WHERE id = ?")
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
            "SELECT {UPSTREAM_CALL_COLUMNS} FROM upstream_calls WHERE source = ? \
             AND started_at >= ? ORDER BY id"
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
            "SELECT day FROM fetched_days WHERE usage_point = ? AND api = ? AND day >= ? \
             AND day < ? ORDER BY day",
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
                "INSERT INTO fetched_days (usage_point, api, day, fetched_at) VALUES (?, ?, ?, ?) \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_chunks_come_in_few_sizes() {
        let mut sizes = Vec::new();
        let mut remaining = 1234;
        while remaining > 0 {
            let n = chunk_len(remaining);
            sizes.push(n);
            remaining -= n;
        }
        assert_eq!(sizes, [512, 512, 128, 64, 16, 2]);
        assert_eq!(chunk_len(0), 0);
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(511), 256);
        assert!(upsert_sql(1).contains("VALUES (?1, ?2, ?3) ON CONFLICT"));
        assert!(upsert_sql(512).contains("(?1, ?1024, ?1025) ON CONFLICT"));
        assert!(outbox_insert_sql(1).ends_with("VALUES (?2, ?3, ?1) RETURNING id"));
        assert!(outbox_insert_sql(512).ends_with("(?1024, ?1025, ?1) RETURNING id"));
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

    /// The outbox and item queries walk only what they need: claiming scans the pending-rows
    /// index in id order, items come from the per-node index already newest first, the purge
    /// reads the sent-rows index. No full scan, no sort.
    #[tokio::test]
    async fn outbox_and_item_queries_use_their_indexes() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let expected = [
            (CLAIM_OUTBOX, "SCAN outbox USING INDEX outbox_pending"),
            (PENDING_COUNT, "USING INDEX outbox_pending"),
            (DISCARD_PENDING, "USING INDEX outbox_pending"),
            (MARK_SENT, "SEARCH outbox USING INTEGER PRIMARY KEY"),
            (PURGE_SENT, "SEARCH outbox USING INDEX outbox_sent"),
            (ITEMS, "SEARCH items USING INDEX items_newest (series_id=?)"),
            (
                ITEMS_BY_ID,
                "SEARCH items USING INDEX items_newest (series_id=?)",
            ),
            (
                TRIM_ITEMS,
                "SEARCH items USING COVERING INDEX items_newest (series_id=? AND id<?)",
            ),
            (SUBSCRIBERS, "SEARCH subscriptions USING INDEX"),
            (
                SUBSCRIPTIONS_OF,
                "SEARCH subscriptions USING INDEX subscriptions_jid (jid>? AND jid<?)",
            ),
        ];
        for (sql, step) in expected {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            assert!(plan.iter().any(|s| s.contains(step)), "{sql}: {plan:?}");
            assert!(
                !plan.iter().any(|s| s.starts_with("SCAN outbox")
                    && !s.contains("USING INDEX outbox_pending")
                    || s.starts_with("SCAN items")
                    || s.starts_with("SCAN subscriptions")),
                "{sql}: {plan:?}"
            );
            // Subscriber lists are small; only they may be sorted by id after the lookup.
            if sql != SUBSCRIBERS && sql != SUBSCRIPTIONS_OF {
                assert!(
                    !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                    "{sql}: {plan:?}"
                );
            }
        }
    }

    #[test]
    fn json_arrays() {
        assert_eq!(json_ints(&[]), "[]");
        assert_eq!(json_ints(&[1, -2, i64::MAX]), "[1,-2,9223372036854775807]");
        let strings = ["a\"b".to_owned(), "c\\d\n\u{1}é".to_owned(), String::new()];
        assert_eq!(json_strings(&strings), r#"["a\"b","c\\d\u000a\u0001é",""]"#);
        assert_eq!(json_strings(&[]), "[]");
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
