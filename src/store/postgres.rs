//! PostgreSQL backend (shared by several component instances).
//!
//! The statements both backends share are in [`super::sql`]; here are those PostgreSQL
//! writes its own way: arrays where SQLite needs many rows or JSON, a row lock for the outbox
//! claim and for the subscriptions a publication bounds, and a table lock for the config grants
//! and for the opening of command sessions.

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::common::OutboxInsert;
use super::sql::impl_store;
use super::NewPublication;
use super::StoreError;
use crate::model::{Item, Reading};

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

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Instances sharing the database start together and reconcile the same config: without the
    /// lock, each would see the grants missing and insert them. This mode conflicts with itself
    /// and with other writes to grants, not with reads.
    async fn begin_config_grants(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE grants IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Instances append to the audit log at the same moment: each must read the head the
    /// previous one wrote. This mode conflicts with itself (appends take turns), not with reads.
    async fn begin_audit(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        PostgresStore::lock_audit(&mut tx).await?;
        Ok(tx)
    }

    /// The audit log's lock inside a transaction (held until it ends).
    async fn lock_audit(conn: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The ids of the next `n` audit entries, in order, in a transaction that holds the log's
    /// lock: every append takes the lock before it takes ids, so they come out consecutive and
    /// in chain order.
    async fn next_audit_ids(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) \
             FROM generate_series(1, $1)",
        )
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?)
    }

    /// Instances open command sessions at the same moment: without the lock, two could count
    /// the same free place and both take it. The mode conflicts with itself and with the deletes
    /// of takes (which wait a few statements), not with counts.
    async fn begin_sessions(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE adhoc_sessions IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Rows per upsert statement. Arrays have no parameter limit; chunks only bound the size of one
/// statement's arguments and of the work redone if it fails.
const MAX_UPSERT_ROWS: usize = 10_000;

/// The upsert of one chunk of readings of one series: two arrays unnested into rows, one
/// statement whatever the chunk size. The `WHERE` skips rows whose value is unchanged, so
/// re-sending stored readings creates no dead tuples and counts no row.
const UPSERT_READINGS: &str = "INSERT INTO readings (series_id, time, value) \
     SELECT $1, t, v FROM UNNEST($2::bigint[], $3::float8[]) AS u (t, v) \
     ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value \
     WHERE readings.value IS DISTINCT FROM excluded.value";

/// Unrevoked grants of the subjects in list `$1`, by the subject index.
const GRANTS_OF_SUBJECTS: &str = "SELECT id, subject, usage_point, series, valid_from, \
     valid_until, origin, purpose FROM grants WHERE subject = ANY($1) AND revoked_at IS NULL ORDER BY id";

/// Republishing an item id replaces the item and gives it a new id from the sequence, making it
/// the newest; one statement, so two instances publishing the same item id cannot collide.
const PUT_ITEM: &str = "INSERT INTO items (series_id, item_id, published_at, payload) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (series_id, item_id) DO UPDATE \
     SET id = DEFAULT, published_at = excluded.published_at, payload = excluded.payload";

const ITEMS_BY_ID: &str = "SELECT item_id, published_at, payload FROM items \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     AND item_id = ANY($4) ORDER BY id DESC LIMIT $3";

/// Queues entries: two arrays unnested into rows, one statement whatever their number. Ids
/// come from the sequence in the order rows are produced, i.e. `ORDER BY n`.
const INSERT_OUTBOX: &str = "INSERT INTO outbox (subscription_id, stanza, created_at) \
     SELECT s, st, $3 FROM UNNEST($1::bigint[], $2::text[]) WITH ORDINALITY AS u (s, st, n) \
     ORDER BY n RETURNING id";

/// Claims subscriptions behind on a series with work, claimed by no one (or whose claim ended
/// before `$3`). `FOR UPDATE SKIP LOCKED`, as for the outbox: concurrent claimers get disjoint
/// sets. `$1` the claim end, `$2` the claim id, `$4` the limit.
const CLAIM_FANOUT: &str = "UPDATE subscriptions SET claimed_until = $1, claim_id = $2 \
     WHERE id IN (SELECT s.id FROM fanout AS f JOIN subscriptions AS s \
     ON s.series_id = f.series_id AND s.delivered_seq < f.head \
     WHERE s.claimed_until IS NULL OR s.claimed_until <= $3 LIMIT $4 \
     FOR UPDATE OF s SKIP LOCKED) \
     RETURNING id, kind, usage_point, series, jid, subid, created_at, series_id, delivered_seq";

/// Moves the cursors of the subscriptions `$1` forward to `$2`, and ends their claims if `$4`
/// and still held by claim `$3`: one statement per group of reports alike.
const ADVANCE: &str = "UPDATE subscriptions SET delivered_seq = GREATEST(delivered_seq, $2), \
     claimed_until = CASE WHEN $4 AND claim_id = $3 THEN NULL ELSE claimed_until END, \
     claim_id = CASE WHEN $4 AND claim_id = $3 THEN NULL ELSE claim_id END \
     WHERE id = ANY($1)";

/// Claims due pending entries, oldest first. `FOR UPDATE SKIP LOCKED`: rows another instance is
/// claiming at the same moment are skipped, not waited for, and a row it has just claimed no
/// longer matches once re-checked; so concurrent claimers get disjoint sets. `$1` the new claim
/// end, `$2` now, `$3` the limit.
const CLAIM_OUTBOX: &str = "UPDATE outbox SET claimed_until = $1 WHERE id IN \
     (SELECT id FROM outbox WHERE sent_at IS NULL AND not_before <= $2 \
      AND (claimed_until IS NULL OR claimed_until <= $2) ORDER BY id LIMIT $3 \
      FOR UPDATE SKIP LOCKED) \
     RETURNING id, subscription_id, stanza, attempts, not_before";

const MARK_SENT: &str = "UPDATE outbox SET sent_at = $1, claimed_until = NULL \
     WHERE id = ANY($2) AND sent_at IS NULL";

const RELEASE: &str = "UPDATE outbox SET claimed_until = NULL \
     WHERE id = ANY($1) AND sent_at IS NULL AND claimed_until IS NOT NULL";

/// Writes prepared readings of one series; returns how many rows were inserted or changed.
async fn upsert_readings(
    conn: &mut PgConnection,
    series_id: i64,
    readings: &[Reading],
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in readings.chunks(MAX_UPSERT_ROWS) {
        let times: Vec<i64> = chunk.iter().map(|r| r.time).collect();
        let values: Vec<f64> = chunk.iter().map(|r| r.value).collect();
        written += sqlx::query(UPSERT_READINGS)
            .bind(series_id)
            .bind(times)
            .bind(values)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(written)
}

/// Queues entries; returns their ids in order.
async fn insert_outbox(
    conn: &mut PgConnection,
    outbox: &[OutboxInsert<'_>],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    if outbox.is_empty() {
        return Ok(Vec::new());
    }
    let subscriptions: Vec<Option<i64>> = outbox.iter().map(|e| e.subscription).collect();
    let stanzas: Vec<&str> = outbox.iter().map(|e| e.stanza).collect();
    let mut ids: Vec<i64> = sqlx::query_scalar(INSERT_OUTBOX)
        .bind(subscriptions)
        .bind(stanzas)
        .bind(now)
        .fetch_all(conn)
        .await?;
    // Ids increase in row order; RETURNING promises no order of its own.
    ids.sort_unstable();
    Ok(ids)
}

/// Stores an item on its node as the newest, replacing one with the same item id.
async fn put_item(conn: &mut PgConnection, series_id: i64, item: &Item) -> Result<(), StoreError> {
    sqlx::query(PUT_ITEM)
        .bind(series_id)
        .bind(&item.item_id)
        .bind(item.published_at)
        .bind(&item.payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const SERIES_IDS: &str = "SELECT s.usage_point, s.path, s.id \
     FROM UNNEST($1::text[], $2::text[]) AS k (usage_point, path) \
     JOIN series AS s ON s.usage_point = k.usage_point AND s.path = k.path";

/// The upsert of readings of any series, returning the keys it inserted or changed. Rows are
/// inserted, and their keys locked, in array order.
const UPSERT_CHANGED: &str = "INSERT INTO readings (series_id, time, value) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) \
     ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value \
     WHERE readings.value IS DISTINCT FROM excluded.value RETURNING series_id, time";

/// [`PUT_ITEM`] for many (no two of one item id: an upsert may not touch a row twice).
const PUT_ITEMS: &str = "INSERT INTO items (series_id, item_id, published_at, payload) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) \
     ON CONFLICT (series_id, item_id) DO UPDATE \
     SET id = DEFAULT, published_at = excluded.published_at, payload = excluded.payload";

/// Keeps the `$2` newest items of each series in array `$1`.
const TRIM_ITEMS_OF: &str = "DELETE FROM items WHERE id IN (SELECT id FROM \
     (SELECT id, row_number() OVER (PARTITION BY series_id ORDER BY id DESC) AS newer \
     FROM items WHERE series_id = ANY($1)) AS ranked WHERE newer > $2)";

/// Adds `$2[i]` to the head of series `$1[i]`. The rows are locked first in id order: the
/// update alone would lock them in whatever order its plan joins them, and two instances
/// bumping the same series in different orders would deadlock.
const BUMP_HEADS: &str = "WITH locked AS \
     (SELECT id FROM series WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE) \
     UPDATE series SET published_seq = published_seq + k.n \
     FROM UNNEST($1::bigint[], $2::bigint[]) AS k (id, n) \
     WHERE series.id = k.id AND series.id IN (SELECT id FROM locked) \
     RETURNING series.id, series.published_seq";

const INSERT_PUBLICATIONS: &str = "INSERT INTO publications \
     (series_id, seq, published_at, pubsub, push) \
     SELECT s, q, $5, p, u FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
     AS k (s, q, p, u)";

/// [`NOTE_WORK`](super::sql::fanout::NOTE_WORK) for many.
const NOTE_WORK_OF: &str = "INSERT INTO fanout (series_id, head) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[]) \
     ON CONFLICT (series_id) DO UPDATE SET head = excluded.head";

/// The `(usage_point, path, id)` of those series of `keys` that exist.
async fn series_ids(
    conn: &mut PgConnection,
    keys: &[(&str, &str)],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let (usage_points, paths): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    Ok(sqlx::query_as(SERIES_IDS)
        .bind(usage_points)
        .bind(paths)
        .fetch_all(conn)
        .await?)
}

/// Writes `(series_id, time, value)` rows (unique keys); returns the keys of those inserted or
/// changed (a row whose value is already stored is neither written nor returned).
async fn upsert_changed(
    conn: &mut PgConnection,
    rows: &[(i64, i64, f64)],
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut changed = Vec::new();
    for chunk in rows.chunks(MAX_UPSERT_ROWS) {
        let series: Vec<i64> = chunk.iter().map(|r| r.0).collect();
        let times: Vec<i64> = chunk.iter().map(|r| r.1).collect();
        let values: Vec<f64> = chunk.iter().map(|r| r.2).collect();
        changed.extend(
            sqlx::query_as::<_, (i64, i64)>(UPSERT_CHANGED)
                .bind(series)
                .bind(times)
                .bind(values)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(changed)
}

/// Stores items on their nodes as the newest, in order.
async fn put_items(conn: &mut PgConnection, items: &[(i64, Item)]) -> Result<(), StoreError> {
    let mut keys: Vec<(i64, &str)> = items
        .iter()
        .map(|(s, i)| (*s, i.item_id.as_str()))
        .collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        // An item id twice (ids are random, so hardly ever): one at a time, in order.
        for (series, item) in items {
            put_item(&mut *conn, *series, item).await?;
        }
        return Ok(());
    }
    let series: Vec<i64> = items.iter().map(|(s, _)| *s).collect();
    let ids: Vec<&str> = items.iter().map(|(_, i)| i.item_id.as_str()).collect();
    let times: Vec<i64> = items.iter().map(|(_, i)| i.published_at).collect();
    let payloads: Vec<&str> = items.iter().map(|(_, i)| i.payload.as_str()).collect();
    sqlx::query(PUT_ITEMS)
        .bind(series)
        .bind(ids)
        .bind(times)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds `n` to the head of each `(series_id, n)`; returns each series' new head.
async fn bump_heads(
    conn: &mut PgConnection,
    counts: &[(i64, i64)],
) -> Result<Vec<(i64, i64)>, StoreError> {
    let (ids, ns): (Vec<i64>, Vec<i64>) = counts.iter().copied().unzip();
    Ok(sqlx::query_as(BUMP_HEADS)
        .bind(ids)
        .bind(ns)
        .fetch_all(conn)
        .await?)
}

/// Inserts `(series_id, seq, notifications)` publications, published at `now`.
async fn insert_publications(
    conn: &mut PgConnection,
    rows: &[(i64, i64, &NewPublication)],
    now: i64,
) -> Result<(), StoreError> {
    let series: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let pubsub: Vec<&str> = rows.iter().map(|r| r.2.pubsub.as_str()).collect();
    let push: Vec<&str> = rows.iter().map(|r| r.2.push.as_str()).collect();
    sqlx::query(INSERT_PUBLICATIONS)
        .bind(series)
        .bind(seqs)
        .bind(pubsub)
        .bind(push)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Notes that each `(series_id, head)` has publications up to `head` to deliver.
async fn note_work(conn: &mut PgConnection, heads: &[(i64, i64)]) -> Result<(), StoreError> {
    let (ids, heads): (Vec<i64>, Vec<i64>) = heads.iter().copied().unzip();
    sqlx::query(NOTE_WORK_OF)
        .bind(ids)
        .bind(heads)
        .execute(conn)
        .await?;
    Ok(())
}

/// A list of ids as one parameter: an array.
fn id_list(ids: &[i64]) -> &[i64] {
    ids
}

/// A list of item ids as one parameter: an array.
fn item_id_list(ids: &[String]) -> &[String] {
    ids
}

impl_store!(PostgresStore, PgConnection);

/// How long the feed waits before listening again after an error.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[async_trait::async_trait]
impl super::ChangeStore for PostgresStore {
    async fn listen(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<super::Change>>, StoreError> {
        use super::Change;
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(super::CHANNEL).await?;
        // Small: a burst of notifications collapses into wake-ups, which coalesce anyway.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let change = match listener.try_recv().await {
                    Ok(Some(n)) => match Change::from_payload(n.payload()) {
                        Some(change) => change,
                        None => continue,
                    },
                    // The connection was lost; the next call makes it again and listens anew.
                    Ok(None) => {
                        tracing::warn!("change feed interrupted; listening again");
                        Change::Resync
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed failed; listening again");
                        tokio::time::sleep(LISTEN_RETRY).await;
                        Change::Resync
                    }
                };
                // A full channel already holds a wake-up of every kind that matters.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(change)
                {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}
