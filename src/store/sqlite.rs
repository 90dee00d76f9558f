//! SQLite backend (embedded, WAL).
//!
//! The statements both backends share are in [`super::sql`]; here are those SQLite writes
//! its own way: multi-row statements and JSON lists where PostgreSQL has arrays, and
//! `BEGIN IMMEDIATE` for writes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Sqlite, Transaction};

use super::common::OutboxInsert;
use super::sql::impl_store;
use super::NewPublication;
use super::StoreError;
use crate::model::{Item, Reading};

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

    /// Likewise for an audit append: it reads the head and writes after it, alone.
    async fn begin_audit(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.begin_write().await
    }

    /// The ids of the next `n` audit entries, in a transaction that holds the write lock: after
    /// the largest ever used (AUTOINCREMENT's record), so a deleted tail's ids are not reused.
    async fn next_audit_ids(conn: &mut SqliteConnection, n: usize) -> Result<Vec<i64>, StoreError> {
        let last: i64 = sqlx::query_scalar(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), \
             coalesce((SELECT max(id) FROM audit_log), 0))",
        )
        .fetch_one(conn)
        .await?;
        Ok((1..).map(|k| last + k).take(n).collect())
    }

    /// SQLite has one writer at a time: an immediate transaction already keeps other instances
    /// on the same file out while the config grants are reconciled.
    async fn begin_config_grants(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.begin_write().await
    }

    /// The audit log's lock inside a write transaction: the write lock `begin_write` took.
    async fn lock_audit(_conn: &mut SqliteConnection) -> Result<(), StoreError> {
        Ok(())
    }

    /// Likewise for the opening of a command session: its counts and insert are one write.
    async fn begin_sessions(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.begin_write().await
    }
}

/// Holds the file lock that keeps a second instance off a SQLite store; released when dropped
/// (or when the process dies, however it dies: the kernel drops the lock with the process).
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
    pub path: std::path::PathBuf,
}

/// Takes the instance lock of a SQLite store file: `<file>.instance-lock`, locked exclusively.
/// A SQLite file serves one instance: claims and leases assume it (a restart releases every
/// claim at once). `Ok(None)` for an in-memory store (no file, nothing to share); an error
/// naming the lock file when another process holds it. Other programs (the `admin` command
/// line, `sqlite3`) open the database itself, not this lock, so they are not kept out.
pub fn instance_lock(url: &str) -> Result<Option<InstanceLock>, String> {
    if is_memory(url) {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url).map_err(|e| e.to_string())?;
    let mut path = options.get_filename().as_os_str().to_owned();
    path.push(".instance-lock");
    let path = std::path::PathBuf::from(path);
    // Taken before the store is opened (which would create the directory).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(InstanceLock { _file: file, path })),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another quoalise-component instance runs on this SQLite store (it holds {}); \
             a SQLite store serves one instance: use a postgres:// store to run several",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// True for the URL forms that sqlx maps to an in-memory database.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// Largest number of rows in one multi-row statement (readings upsert, outbox insert): at most 4
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
/// then `row` (its anonymous `?` parameters) for each row joined by commas, then `tail`.
/// Anonymous parameters only: sqlx looks each parameter's name up when it binds, and SQLite
/// finds a numbered one (`?7`) by walking the list of names, so a statement with n numbered
/// parameters costs n² to bind (a third of the writer's time at 1,536 parameters).
fn multi_row_statements(head: &str, row: &str, tail: &str) -> Vec<String> {
    (0..=MAX_ROWS.ilog2())
        .map(|log| format!("{head}{}{tail}", vec![row; 1usize << log].join(", ")))
        .collect()
}

/// The statement of `all` (from [`multi_row_statements`]) for `rows`, a power of two up to
/// [`MAX_ROWS`] as [`chunk_len`] gives.
fn statement_for(all: &[String], rows: usize) -> &str {
    let index = (rows.max(1).ilog2() as usize).min(all.len() - 1);
    &all[index]
}

/// The upsert of `rows` readings: series id, time and value of each row. The `WHERE` skips rows whose value is unchanged, so re-sending stored readings writes no
/// page and counts no row.
fn upsert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT INTO readings (series_id, time, value) VALUES ",
            "(?, ?, ?)",
            " ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value \
             WHERE readings.value <> excluded.value",
        )
    });
    statement_for(all, rows)
}

/// The insert of `rows` outbox entries: subscription id, stanza and creation time of each row.
fn outbox_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT INTO outbox (subscription_id, stanza, created_at) VALUES ",
            "(?, ?, ?)",
            " RETURNING id",
        )
    });
    statement_for(all, rows)
}

/// A JSON array of strings, for `json_each`: one bound parameter whatever the list length.
fn item_id_list(items: &[String]) -> String {
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
fn id_list(ids: &[i64]) -> String {
    let items: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
}

/// Unrevoked grants of the subjects in list `$1`, by the subject index.
const GRANTS_OF_SUBJECTS: &str = "SELECT id, subject, usage_point, series, valid_from, \
     valid_until, origin, purpose FROM grants WHERE subject IN (SELECT value FROM json_each($1)) AND revoked_at IS NULL ORDER BY id";

/// Republishing an item id replaces the item; delete and insert give it a new row id, the
/// newest. SQLite has a single writer, so the pair cannot race.
const DELETE_ITEM: &str = "DELETE FROM items WHERE series_id = ? AND item_id = ?";

const INSERT_ITEM: &str =
    "INSERT INTO items (series_id, item_id, published_at, payload) VALUES (?, ?, ?, ?)";

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

/// Claims subscriptions behind on a series with work, claimed by no one (or whose claim ended
/// before `?3`): one statement, so atomic under SQLite's write lock. `CROSS JOIN` keeps the
/// few series with work as the outer loop, each a range of `subscriptions_behind`. `?1` the
/// claim end, `?2` the claim id, `?4` the limit.
const CLAIM_FANOUT: &str = "UPDATE subscriptions SET claimed_until = ?1, claim_id = ?2 \
     WHERE id IN (SELECT s.id FROM fanout AS f CROSS JOIN subscriptions AS s \
     ON s.series_id = f.series_id AND s.delivered_seq < f.head \
     WHERE s.claimed_until IS NULL OR s.claimed_until <= ?3 LIMIT ?4) \
     RETURNING id, kind, usage_point, series, jid, subid, created_at, series_id, delivered_seq";

/// Moves the cursors of the subscriptions in `?1` (a JSON array) forward to `?2`, and ends
/// their claims if `?4` and still held by claim `?3`: one statement per group of reports alike
/// (usually one per batch), no per-row decoding.
const ADVANCE: &str = "UPDATE subscriptions SET delivered_seq = MAX(delivered_seq, ?2), \
     claimed_until = CASE WHEN ?4 AND claim_id = ?3 THEN NULL ELSE claimed_until END, \
     claim_id = CASE WHEN ?4 AND claim_id = ?3 THEN NULL ELSE claim_id END \
     WHERE id IN (SELECT value FROM json_each(?1))";

/// Writes prepared readings of one series; returns how many rows were inserted or changed.
async fn upsert_readings(
    conn: &mut SqliteConnection,
    series_id: i64,
    readings: &[Reading],
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in power_of_two_chunks(readings) {
        let mut query = sqlx::query(upsert_sql(chunk.len()));
        for r in chunk {
            query = query.bind(series_id).bind(r.time).bind(r.value);
        }
        written += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

/// Queues entries; returns their ids in order.
async fn insert_outbox(
    conn: &mut SqliteConnection,
    outbox: &[OutboxInsert<'_>],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(outbox.len());
    for chunk in power_of_two_chunks(outbox) {
        let mut query = sqlx::query_scalar(outbox_insert_sql(chunk.len()));
        for entry in chunk {
            query = query.bind(entry.subscription).bind(entry.stanza).bind(now);
        }
        // Rows of one statement get increasing ids in VALUES order; RETURNING promises no order.
        let mut chunk_ids: Vec<i64> = query.fetch_all(&mut *conn).await?;
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }
    Ok(ids)
}

/// Stores an item on its node as the newest, replacing one with the same item id.
async fn put_item(
    conn: &mut SqliteConnection,
    series_id: i64,
    item: &Item,
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
    Ok(())
}

/// `?1` a JSON array of `[usage_point, path]` pairs.
const SERIES_IDS: &str = "SELECT s.usage_point, s.path, s.id FROM json_each(?1) AS k \
     CROSS JOIN series AS s ON s.usage_point = k.value ->> 0 AND s.path = k.value ->> 1";

/// The readings stored in spans of series: `?1` a JSON array of `[series_id, first, last]`
/// (times inclusive), each a range of the primary key.
const HELD_IN_SPANS: &str = "SELECT r.series_id, r.time, r.value FROM json_each(?1) AS k \
     CROSS JOIN readings AS r ON r.series_id = k.value ->> 0 \
     AND r.time BETWEEN k.value ->> 1 AND k.value ->> 2";

/// Keeps the `?2` newest items of each series in `?1` (a JSON array of ids).
const TRIM_ITEMS_OF: &str = "DELETE FROM items WHERE id IN (SELECT id FROM \
     (SELECT id, row_number() OVER (PARTITION BY series_id ORDER BY id DESC) AS newer \
     FROM items WHERE series_id IN (SELECT value FROM json_each(?1))) WHERE newer > ?2)";

/// `?1` a JSON array of `[series_id, count]` pairs.
const BUMP_HEADS: &str = "UPDATE series SET published_seq = published_seq + (k.value ->> 1) \
     FROM json_each(?1) AS k WHERE series.id = k.value ->> 0 RETURNING id, published_seq";

/// [`NOTE_WORK`](super::sql::fanout::NOTE_WORK) for many: `?1` a JSON array of
/// `[series_id, head]` pairs (`WHERE true` tells SQLite's parser the `ON` is the upsert's).
const NOTE_WORK_OF: &str = "INSERT INTO fanout (series_id, head) \
     SELECT k.value ->> 0, k.value ->> 1 FROM json_each(?1) AS k WHERE true \
     ON CONFLICT (series_id) DO UPDATE SET head = excluded.head";

/// The `(usage_point, path, id)` of those series of `keys` that exist.
async fn series_ids(
    conn: &mut SqliteConnection,
    keys: &[(&str, &str)],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(sqlx::query_as(SERIES_IDS)
        .bind(json_list(keys))
        .fetch_all(conn)
        .await?)
}

/// Writes `(series_id, time, value)` rows (unique keys, in key order); returns the keys of those
/// inserted or changed (a row whose value is already stored is neither written nor returned).
///
/// What is stored over the rows' time span is read first, in the same write transaction (so
/// nothing changes in between), and only the other rows are written. That costs one statement
/// returning the few rows already there; an upsert `RETURNING` every new row would hand each
/// one over from the database's thread alone, a wake-up per row.
async fn upsert_changed(
    conn: &mut SqliteConnection,
    rows: &[(i64, i64, f64)],
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut spans: Vec<(i64, i64, i64)> = Vec::new();
    for &(series, time, _) in rows {
        match spans.last_mut() {
            Some(span) if span.0 == series => span.2 = span.2.max(time),
            _ => spans.push((series, time, time)),
        }
    }
    let held: HashMap<(i64, i64), f64> = sqlx::query_as::<_, (i64, i64, f64)>(HELD_IN_SPANS)
        .bind(json_list(&spans))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(series, time, value)| ((series, time), value))
        .collect();
    let changed: Vec<(i64, i64, f64)> = rows
        .iter()
        .filter(|&&(series, time, value)| held.get(&(series, time)) != Some(&value))
        .copied()
        .collect();
    for chunk in power_of_two_chunks(&changed) {
        let mut query = sqlx::query(upsert_sql(chunk.len()));
        for &(series, time, value) in chunk {
            query = query.bind(series).bind(time).bind(value);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(changed
        .into_iter()
        .map(|(series, time, _)| (series, time))
        .collect())
}

/// Stores items on their nodes as the newest, in order; `OR REPLACE` deletes an item of the
/// same id first, so the row gets a new id, the newest.
async fn put_items(conn: &mut SqliteConnection, items: &[(i64, Item)]) -> Result<(), StoreError> {
    for chunk in power_of_two_chunks(items) {
        let mut query = sqlx::query(put_items_sql(chunk.len()));
        for (series, item) in chunk {
            query = query
                .bind(*series)
                .bind(&item.item_id)
                .bind(item.published_at)
                .bind(&item.payload);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds `n` to the head of each `(series_id, n)`; returns each series' new head.
async fn bump_heads(
    conn: &mut SqliteConnection,
    counts: &[(i64, i64)],
) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as(BUMP_HEADS)
        .bind(json_list(counts))
        .fetch_all(conn)
        .await?)
}

/// Inserts `(series_id, seq, notifications)` publications, published at `now`.
async fn insert_publications(
    conn: &mut SqliteConnection,
    rows: &[(i64, i64, &NewPublication)],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in power_of_two_chunks(rows) {
        let mut query = sqlx::query(insert_publications_sql(chunk.len()));
        for (series, seq, publication) in chunk {
            query = query
                .bind(*series)
                .bind(*seq)
                .bind(now)
                .bind(&publication.pubsub)
                .bind(&publication.push);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Notes that each `(series_id, head)` has publications up to `head` to deliver.
async fn note_work(conn: &mut SqliteConnection, heads: &[(i64, i64)]) -> Result<(), StoreError> {
    sqlx::query(NOTE_WORK_OF)
        .bind(json_list(heads))
        .execute(conn)
        .await?;
    Ok(())
}

/// A JSON array for `json_each`: one bound parameter whatever the list's length.
fn json_list<T: serde::Serialize + ?Sized>(values: &T) -> String {
    // Pairs of strings and integers always serialise.
    serde_json::to_string(values).unwrap_or_else(|_| String::from("[]"))
}

/// `rows` in the chunks [`chunk_len`] gives.
fn power_of_two_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let (chunk, tail) = rows.split_at(chunk_len(rows.len()));
        rows = tail;
        Some(chunk)
    })
}

/// The insert of `rows` items: series id, item id, publication time and payload of each.
fn put_items_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT OR REPLACE INTO items (series_id, item_id, published_at, payload) VALUES ",
            "(?, ?, ?, ?)",
            "",
        )
    });
    statement_for(all, rows)
}

/// The insert of `rows` publications: series id, seq, publication time and the two templates
/// of each.
fn insert_publications_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        multi_row_statements(
            "INSERT INTO publications (series_id, seq, published_at, pubsub, push) VALUES ",
            "(?, ?, ?, ?, ?)",
            "",
        )
    });
    statement_for(all, rows)
}

impl_store!(SqliteStore, SqliteConnection);

#[async_trait::async_trait]
impl super::ChangeStore for SqliteStore {
    /// One instance per file: its tasks wake each other in memory.
    async fn listen(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<super::Change>>, StoreError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::fanout::TRIM_ITEMS;
    use crate::store::sql::outbox::{DISCARD_PENDING, OLDEST_PENDING, PENDING_COUNT, PURGE_SENT};
    use crate::store::sql::readings::{COUNT_IN_RANGE, ITEMS, LAST_READING, READINGS_IN_RANGE};
    use crate::store::sql::subscriptions::{SUBSCRIBERS, SUBSCRIPTIONS_OF};

    /// The steps of SQLite's plan for `sql`.
    async fn plan(store: &SqliteStore, sql: &str) -> Vec<String> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.pool)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect()
    }

    #[test]
    fn upsert_chunks_come_in_few_sizes() {
        let rows = vec![0u8; 1234];
        let sizes: Vec<usize> = power_of_two_chunks(&rows).map(<[u8]>::len).collect();
        assert_eq!(sizes, [512, 512, 128, 64, 16, 2]);
        assert_eq!(chunk_len(0), 0);
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(511), 256);
        // Anonymous parameters only (see `multi_row_statements`), as many as bound.
        for (sql, per_row) in [
            (upsert_sql as fn(usize) -> &'static str, 3),
            (outbox_insert_sql, 3),
            (put_items_sql, 4),
            (insert_publications_sql, 5),
        ] {
            for rows in [1, 2, 256, 512] {
                let statement = sql(rows);
                assert_eq!(
                    statement.matches('?').count(),
                    per_row * rows,
                    "{statement}"
                );
                assert!(!statement.contains("?1"), "{statement}");
            }
        }
        assert!(upsert_sql(1).contains("VALUES (?, ?, ?) ON CONFLICT"));
    }

    /// The plans SQLite picks: one-year queries must be range scans of the primary key, with
    /// no sort and no full scan.
    /// The statements of a group commit (`publish_new`) walk their JSON list and look each
    /// entry up: no scan of a table, whatever it holds.
    #[tokio::test]
    async fn group_statements_search_by_key() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for (sql, search) in [
            (
                HELD_IN_SPANS,
                "SEARCH r USING PRIMARY KEY (series_id=? AND time>? AND time<?)",
            ),
            (SERIES_IDS, "SEARCH s USING COVERING INDEX"),
            (
                TRIM_ITEMS_OF,
                "SEARCH items USING COVERING INDEX items_newest (series_id=?)",
            ),
            (
                BUMP_HEADS,
                "SEARCH series USING INTEGER PRIMARY KEY (rowid=?)",
            ),
        ] {
            let steps = plan(&store, sql).await;
            assert!(
                steps.iter().any(|step| step.starts_with(search)),
                "{sql}: {steps:?}"
            );
            // Scanning the JSON list or a subquery's rows is the point; a table, never.
            let scans_a_table = steps.iter().any(|step| {
                ["items", "readings", "series", "r", "s"]
                    .iter()
                    .any(|table| {
                        step.strip_prefix("SCAN ")
                            .is_some_and(|rest| rest.split(' ').next() == Some(*table))
                    })
            });
            assert!(!scans_a_table, "{sql}: {steps:?}");
        }
    }

    #[tokio::test]
    async fn range_queries_scan_the_primary_key() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for sql in [READINGS_IN_RANGE, COUNT_IN_RANGE, LAST_READING] {
            let steps = plan(&store, sql).await;
            let plan: Vec<&str> = steps.iter().map(String::as_str).collect();
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
            (OLDEST_PENDING, "SCAN outbox USING INDEX outbox_pending"),
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
            let steps = plan(&store, sql).await;
            let plan: Vec<&str> = steps.iter().map(String::as_str).collect();
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

    /// The count behind the subscription limits reads only the requester's rows of the jid
    /// index, however many subscriptions others hold.
    #[tokio::test]
    async fn subscription_counts_use_the_jid_index() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let sql = crate::store::sql::subscriptions::SUBSCRIPTION_COUNTS;
        let steps = plan(&store, sql).await;
        let plan: Vec<&str> = steps.iter().map(String::as_str).collect();
        assert!(
            plan.iter()
                .any(|s| s.contains("SEARCH subscriptions USING INDEX subscriptions_jid")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|s| s.starts_with("SCAN subscriptions")),
            "{plan:?}"
        );
    }

    /// The fan-out statements cost per subscription behind, not per subscription: the claim
    /// and the pending count start from the series with work and walk `subscriptions_behind`,
    /// the advance looks each subscription up by id, the prune asks the index for each series'
    /// slowest cursor. No full scan of subscriptions, no sort.
    #[tokio::test]
    async fn fanout_statements_walk_only_subscriptions_behind() {
        use crate::store::sql::fanout::{PENDING, PRUNE, SETTLE};
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let expected = [
            (
                CLAIM_FANOUT,
                "SEARCH s USING INDEX subscriptions_behind (series_id=? AND delivered_seq<?)",
            ),
            (
                PENDING,
                "SEARCH s USING COVERING INDEX subscriptions_behind (series_id=? AND delivered_seq<?)",
            ),
            (
                SETTLE,
                "SEARCH s USING COVERING INDEX subscriptions_behind (series_id=? AND delivered_seq<?)",
            ),
            (
                PRUNE,
                "SEARCH s USING COVERING INDEX subscriptions_behind (series_id=?)",
            ),
            (
                ADVANCE,
                "SEARCH subscriptions USING INTEGER PRIMARY KEY (rowid=?)",
            ),
        ];
        for (sql, step) in expected {
            let steps = plan(&store, sql).await;
            let plan: Vec<&str> = steps.iter().map(String::as_str).collect();
            assert!(plan.contains(&step), "{sql}: {plan:?}");
            assert!(
                !plan.iter().any(|s| s.starts_with("SCAN s")
                    || s.starts_with("SCAN subscriptions")
                    || s.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn json_arrays() {
        assert_eq!(id_list(&[]), "[]");
        assert_eq!(id_list(&[1, -2, i64::MAX]), "[1,-2,9223372036854775807]");
        let strings = ["a\"b".to_owned(), "c\\d\n\u{1}é".to_owned(), String::new()];
        assert_eq!(item_id_list(&strings), r#"["a\"b","c\\d\u000a\u0001é",""]"#);
        assert_eq!(item_id_list(&[]), "[]");
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
