//! The SQL both backends speak alike, written once.
//!
//! SQLite and PostgreSQL accept the same statements for almost everything the store does, and
//! sqlx binds `$n` placeholders on both. What differs (multi-row upserts, list parameters, the
//! outbox claim, locking, transaction start) stays in each backend; the rest is here.
//!
//! Why a macro and not generic functions: a function generic over sqlx's `Database` needs a
//! bound for every type it binds or decodes and for the executor of each connection kind, on
//! every function, and `async_trait` futures must still be `Send`. [`impl_store`] instead
//! expands the same text inside each backend against its concrete pool and connection types, so
//! each backend's queries stay plain, concrete and checked at run time by its own tests.

/// The id of a series, which readings reference.
pub(super) const SERIES_ID: &str = "SELECT id FROM series WHERE usage_point = $1 AND path = $2";

/// Readings of one series in `[start, end)`: the scalar subquery resolves the series once, the
/// rest is one range scan of the readings primary key, already in time order (no sort).
pub(super) const READINGS_IN_RANGE: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     AND time >= $3 AND time < $4 ORDER BY time LIMIT $5";

pub(super) const COUNT_IN_RANGE: &str = "SELECT COUNT(*) FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     AND time >= $3 AND time < $4";

pub(super) const LAST_READING: &str = "SELECT time, value FROM readings \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     ORDER BY time DESC LIMIT 1";

/// Adds a subscription, or returns the existing one unchanged (the no-op update makes
/// `RETURNING` give the stored row, and serialises concurrent subscribes): idempotent in one
/// statement. No row at all means the series does not exist.
pub(super) const SUBSCRIBE: &str = "INSERT INTO subscriptions (kind, usage_point, series, jid, \
     subid, created_at) SELECT $1, $2, $3, $4, $5, $6 \
     WHERE EXISTS (SELECT 1 FROM series WHERE usage_point = $2 AND path = $3) \
     ON CONFLICT (usage_point, series, kind, jid) DO UPDATE SET subid = subscriptions.subid \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

/// `CAST`: PostgreSQL cannot infer the type of a parameter only ever compared with NULL.
pub(super) const UNSUBSCRIBE: &str = "DELETE FROM subscriptions \
     WHERE usage_point = $1 AND kind = $2 AND jid = $3 \
     AND (CAST($4 AS TEXT) IS NULL OR series = $4) AND (CAST($5 AS TEXT) IS NULL OR subid = $5) \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

pub(super) const REMOVE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1 \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

pub(super) const SUBSCRIBERS: &str = "SELECT id, kind, usage_point, series, jid, subid, \
     created_at FROM subscriptions WHERE usage_point = $1 AND series = $2 ORDER BY id";

/// `$1` the bare JID, `$2`..`$3` the range of its full JIDs (see `jid_range`; the PostgreSQL
/// column is COLLATE "C", so both compare bytewise), `$4` an optional usage point.
pub(super) const SUBSCRIPTIONS_OF: &str = "SELECT id, kind, usage_point, series, jid, subid, \
     created_at FROM subscriptions WHERE (jid = $1 OR (jid >= $2 AND jid < $3)) \
     AND (CAST($4 AS TEXT) IS NULL OR usage_point = $4) ORDER BY id";

/// What one requester holds, for its subscription limits: `$1`..`$3` as in [`SUBSCRIPTIONS_OF`];
/// then its subscriptions in all, those on series (`$4`, `$5`), and those of kind `$6` and exact
/// JID `$7` there (0 or 1). One scan of the requester's rows of the jid index.
pub(super) const SUBSCRIPTION_COUNTS: &str = "SELECT COUNT(*), \
     COUNT(CASE WHEN usage_point = $4 AND series = $5 THEN 1 END), \
     COUNT(CASE WHEN usage_point = $4 AND series = $5 AND kind = $6 AND jid = $7 THEN 1 END) \
     FROM subscriptions WHERE jid = $1 OR (jid >= $2 AND jid < $3)";

/// Keeps the `$2` newest items of series `$1`: deletes from the (`$2` + 1)-th newest down. No
/// such item, nothing deleted (`id <= NULL` is never true).
pub(super) const TRIM_ITEMS: &str = "DELETE FROM items WHERE series_id = $1 AND id <= \
     (SELECT id FROM items WHERE series_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

/// The `$3` newest items of a node.
pub(super) const ITEMS: &str = "SELECT item_id, published_at, payload FROM items \
     WHERE series_id = (SELECT id FROM series WHERE usage_point = $1 AND path = $2) \
     ORDER BY id DESC LIMIT $3";

/// Revokes grant `$2` at time `$1`, unless already revoked.
pub(super) const REVOKE_GRANT: &str =
    "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

pub(super) const RETRY_LATER: &str = "UPDATE outbox SET sent_at = NULL, claimed_until = NULL, \
     attempts = attempts + 1, not_before = $1 WHERE id = $2";

pub(super) const DISCARD_PENDING: &str =
    "DELETE FROM outbox WHERE subscription_id = $1 AND sent_at IS NULL";

pub(super) const PURGE_SENT: &str = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1";

pub(super) const PENDING_COUNT: &str = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

/// The [`Store`](super::Store) implementation of `$store`, a backend whose connections are
/// `$connection`.
///
/// The expansion is a child module of the backend (`use super::*`), which must provide what
/// its SQL does its own way:
/// - a `pool` field on `$store`;
/// - `$store::begin_write(&self)`: a transaction that may write;
/// - `$store::begin_config_grants(&self)`: the same, safe against other instances reconciling
///   the config grants at the same moment;
/// - `upsert_readings(conn, series_id, &[Reading]) -> Result<u64, StoreError>`: rows written;
/// - `insert_outbox(conn, &[NewEntry], now) -> Result<Vec<i64>, StoreError>`: the new
///   entries' ids, in order;
/// - for the bound of [`Store::publish`](super::Store::publish): `bump_outbox_seq(conn,
///   &[(subscription, n)])` adds `n` to each subscription's `outbox_seq` and returns the new
///   values (on PostgreSQL, having locked those subscriptions until the transaction ends);
///   `drop_beyond(conn, &[subscription], keep, now)` deletes their unclaimed waiting entries
///   numbered `keep` or more behind the newest and returns `(subscription, created_at)` of each;
///   `add_to_notices(conn, &[(subscription, n)])` adds `n` to the newest waiting unclaimed notice
///   of each and returns the subscriptions that had one;
/// - `put_item(conn, series_id, &Item) -> Result<(), StoreError>`: stores an item as the
///   newest of its node, replacing one of the same id;
/// - `id_list(&[i64])` and `item_id_list(&[String])`: a list as one bound parameter;
/// - the statements `CLAIM_OUTBOX` (`$1` claim end, `$2` now, `$3` limit: due entries claimed by
///   no one else), `MARK_SENT` (`$1` time, `$2` id list), `RELEASE` (`$1` id list) and
///   `ITEMS_BY_ID` (as [`ITEMS`], `$4` an item id list).
macro_rules! impl_store {
    ($store:ident, $connection:ty) => {
        mod shared_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::store::SubscriptionCounts;
            use $crate::model::{
                AuditEntry, Batch, Consent, ConsentRequest, Grant, GrantOrigin, Item, OAuthState,
                OutboxEntry, Reading, Series, Subscription, SubscriptionKind, UpstreamCall,
                UsagePoint,
            };
            use $crate::store::common::{
                count_from_sql, entries_per_subscription, jid_range, limit_to_sql,
                number_entries, plan_config_grants, prepare_readings, sql_limit, tally_drops,
                ConfigGrantPlan, NewEntry,
            };
            use $crate::store::rows::{
                grants_from_rows, items_from_rows, outbox_from_rows, reading_from_row,
                subscriptions_from_rows, unix_now, AuditRow, ConsentRequestRow, ConsentRow,
                GrantRow, ItemRow, OAuthStateRow, OutboxRow, ReadingRow,
                SeriesRow, SubscriptionRow, UpstreamCallRow, UsagePointRow, AUDIT_COLUMNS,
                CONSENT_COLUMNS, CONSENT_REQUEST_COLUMNS, GRANT_COLUMNS, OAUTH_STATE_COLUMNS,
                OUTBOX_COLUMNS, SERIES_COLUMNS, SUBSCRIPTION_COLUMNS, UPSTREAM_CALL_COLUMNS,
                USAGE_POINT_COLUMNS,
            };
            use $crate::store::shared::{
                COUNT_IN_RANGE, DISCARD_PENDING, ITEMS, LAST_READING, PENDING_COUNT, PURGE_SENT,
                READINGS_IN_RANGE, REMOVE_SUBSCRIPTION, RETRY_LATER, REVOKE_GRANT, SERIES_ID,
                SUBSCRIBE, SUBSCRIBERS, SUBSCRIPTIONS_OF, SUBSCRIPTION_COUNTS, TRIM_ITEMS,
                UNSUBSCRIBE,
            };
            use $crate::store::{PublishLimits, Published, Store, StoreError};

            /// The id of series (`usage_point`, `series`), or [`StoreError::UnknownSeries`].
async fn series_id(
                conn: &mut $connection,
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

            async fn insert_grant(
                conn: &mut $connection,
                grant: &Grant,
                origin: GrantOrigin,
                now: i64,
            ) -> Result<i64, StoreError> {
                let id = sqlx::query_scalar(
                    "INSERT INTO grants (subject, usage_point, series, valid_from, valid_until, \
                     origin, purpose, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     RETURNING id",
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

            /// The bound of [`Store::publish`], once the publication's entries are queued and
            /// numbered (`newest`: each subscription's last number): drops the waiting entries
            /// beyond `limits.max_pending` and counts them into each subscription's waiting
            /// notice, or a new one. Returns how many were dropped.
            async fn bound_outbox(
                conn: &mut $connection,
                newest: &[(i64, i64)],
                limits: &PublishLimits<'_>,
                now: i64,
            ) -> Result<u64, StoreError> {
                let subscriptions: Vec<i64> = newest.iter().map(|(id, _)| *id).collect();
                let keep = limit_to_sql(limits.max_pending);
                let gone = drop_beyond(&mut *conn, &subscriptions, keep, now).await?;
                let tally = tally_drops(&gone);
                if tally.is_empty() {
                    return Ok(0);
                }
                let counts: Vec<(i64, i64)> = tally.iter().map(|(s, (n, _))| (*s, *n)).collect();
                let counted: std::collections::HashSet<i64> =
                    add_to_notices(&mut *conn, &counts).await?.into_iter().collect();
                let texts: Vec<(i64, i64, String)> = tally
                    .iter()
                    .filter(|(s, _)| !counted.contains(*s))
                    .filter_map(|(s, (n, since))| Some((*s, *n, (limits.notice)(*s, *since)?)))
                    .collect();
                let notices: Vec<NewEntry<'_>> = texts
                    .iter()
                    .map(|(s, n, text)| NewEntry {
                        missed: Some(*n),
                        ..NewEntry::plain(Some(*s), text)
                    })
                    .collect();
                insert_outbox(conn, &notices, now).await?;
                Ok(u64::try_from(gone.len()).unwrap_or(u64::MAX))
            }

            #[async_trait]
            impl Store for $store {
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

                async fn replace_config_grants(&self, grants: &[Grant]) -> Result<(), StoreError> {
                    let now = unix_now();
                    let mut tx = self.begin_config_grants().await?;
                    let rows: Vec<GrantRow> = sqlx::query_as(&format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE origin = $1 \
                         AND revoked_at IS NULL ORDER BY id"
                    ))
                    .bind(GrantOrigin::Config.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    let existing = grants_from_rows(rows)?;
                    let ConfigGrantPlan { revoke, insert } = plan_config_grants(&existing, grants);
                    // One statement per grant: the config names a handful, and a list parameter is
                    // the one thing the two backends bind differently.
                    for id in revoke {
                        sqlx::query(REVOKE_GRANT)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    for grant in insert {
                        // Stored as config whatever the caller set, or the next reconciliation
                        // would miss them and they would pile up at every start.
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
                    let changed = sqlx::query(REVOKE_GRANT)
                        .bind(unix_now())
                        .bind(id)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    Ok(changed > 0)
                }

                async fn grants_for(&self, subject: &str) -> Result<Vec<Grant>, StoreError> {
                    let rows: Vec<GrantRow> = sqlx::query_as(&format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE subject = $1 \
                         AND revoked_at IS NULL ORDER BY id"
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

                async fn remove_subscription(
                    &self,
                    id: i64,
                ) -> Result<Option<Subscription>, StoreError> {
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

                async fn subscription_counts(
                    &self,
                    bare_jid: &str,
                    kind: SubscriptionKind,
                    usage_point: &str,
                    series: &str,
                    jid: &str,
                ) -> Result<SubscriptionCounts, StoreError> {
                    let (from, to) = jid_range(bare_jid);
                    let (total, on_series, same): (i64, i64, i64) =
                        sqlx::query_as(SUBSCRIPTION_COUNTS)
                            .bind(bare_jid)
                            .bind(from)
                            .bind(to)
                            .bind(usage_point)
                            .bind(series)
                            .bind(kind.as_str())
                            .bind(jid)
                            .fetch_one(&self.pool)
                            .await?;
                    Ok(SubscriptionCounts {
                        total: count_from_sql(total)?,
                        on_series: count_from_sql(on_series)?,
                        exists: same > 0,
                    })
                }

                async fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
                    let rows: Vec<SubscriptionRow> = sqlx::query_as(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id"
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                    subscriptions_from_rows(rows)
                }

                async fn count_subscriptions(&self) -> Result<u64, StoreError> {
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions")
                        .fetch_one(&self.pool)
                        .await?;
                    count_from_sql(count)
                }

                async fn publish(
                    &self,
                    batch: &Batch,
                    item: Option<&Item>,
                    outbox: &[(Option<i64>, String)],
                    limits: &PublishLimits<'_>,
                ) -> Result<Published, StoreError> {
                    let readings = prepare_readings(batch)?;
                    let now = unix_now();
                    let mut tx = self.begin_write().await?;
                    let batch_series =
                        series_id(&mut tx, &batch.usage_point, &batch.series).await?;
                    upsert_readings(&mut tx, batch_series, &readings).await?;
                    if let Some(item) = item {
                        let item_series = if item.usage_point == batch.usage_point
                            && item.series == batch.series
                        {
                            batch_series
                        } else {
                            series_id(&mut tx, &item.usage_point, &item.series).await?
                        };
                        put_item(&mut tx, item_series, item).await?;
                        sqlx::query(TRIM_ITEMS)
                            .bind(item_series)
                            .bind(limit_to_sql(limits.max_items))
                            .execute(&mut *tx)
                            .await?;
                    }
                    // Rows for no subscription, or for none left, are not numbered: never dropped.
                    let counts = entries_per_subscription(outbox);
                    let newest = if counts.is_empty() {
                        Vec::new()
                    } else {
                        bump_outbox_seq(&mut tx, &counts).await?
                    };
                    let ids = insert_outbox(&mut tx, &number_entries(outbox, &newest), now).await?;
                    let dropped = if newest.is_empty() {
                        0
                    } else {
                        bound_outbox(&mut tx, &newest, limits, now).await?
                    };
                    tx.commit().await?;
                    Ok(Published { ids, dropped })
                }

                async fn enqueue(
                    &self,
                    outbox: &[(Option<i64>, String)],
                ) -> Result<Vec<i64>, StoreError> {
                    if outbox.is_empty() {
                        return Ok(Vec::new());
                    }
                    let entries: Vec<NewEntry<'_>> = outbox
                        .iter()
                        .map(|(s, stanza)| NewEntry::plain(*s, stanza))
                        .collect();
                    // SQLite may need several statements for a long list: all of them or none.
                    let mut tx = self.begin_write().await?;
                    let ids = insert_outbox(&mut tx, &entries, unix_now()).await?;
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
                        .bind(id_list(ids))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    Ok(sqlx::query(RELEASE)
                        .bind(id_list(ids))
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
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
                    let row: Option<OutboxRow> = sqlx::query_as(&format!(
                        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
                    ))
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

                async fn add_consent_request(
                    &self,
                    request: &ConsentRequest,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO consent_requests (id, source, app_jid, name, logo_url, \
                         description, redirect_uri, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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

                async fn consent_request(
                    &self,
                    id: &str,
                ) -> Result<Option<ConsentRequest>, StoreError> {
                    let row: Option<ConsentRequestRow> = sqlx::query_as(&format!(
                        "SELECT {CONSENT_REQUEST_COLUMNS} FROM consent_requests WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(ConsentRequest::from))
                }

                async fn count_consent_requests(&self, app_jid: &str) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM consent_requests WHERE app_jid = $1",
                    )
                    .bind(app_jid)
                    .fetch_one(&self.pool)
                    .await?;
                    count_from_sql(n)
                }

                async fn add_oauth_state(
                    &self,
                    state: &OAuthState,
                    keep: usize,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                        .bind(state.created_at)
                        .execute(&mut *tx)
                        .await?;
                    let live: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM oauth_states WHERE request_id = $1",
                    )
                    .bind(&state.request_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let excess = live.saturating_sub(limit_to_sql(keep)).saturating_add(1);
                    if excess > 0 {
                        sqlx::query(
                            "DELETE FROM oauth_states WHERE state IN (SELECT state FROM \
                             oauth_states WHERE request_id = $1 ORDER BY created_at, state \
                             LIMIT $2)",
                        )
                        .bind(&state.request_id)
                        .bind(excess)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query(
                        "INSERT INTO oauth_states (state, request_id, duration, app_state, \
                         redirect_uri, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&state.state)
                    .bind(&state.request_id)
                    .bind(&state.duration)
                    .bind(&state.app_state)
                    .bind(&state.redirect_uri)
                    .bind(state.created_at)
                    .bind(state.expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn take_oauth_state(
                    &self,
                    state: &str,
                    now: i64,
                ) -> Result<Option<OAuthState>, StoreError> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let row: Option<OAuthStateRow> = sqlx::query_as(&format!(
                        "DELETE FROM oauth_states WHERE state = $1 RETURNING {OAUTH_STATE_COLUMNS}"
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
                        "INSERT INTO consents (source, usage_point, app_jid, purpose, request_id, \
                         reference, begins_at, expires_at, grant_id, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
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

                async fn active_consents(
                    &self,
                    source: &str,
                    now: i64,
                ) -> Result<Vec<Consent>, StoreError> {
                    let rows: Vec<ConsentRow> = sqlx::query_as(&format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE source = $1 \
                         AND revoked_at IS NULL AND begins_at <= $2 AND $3 < expires_at \
                         ORDER BY id"
                    ))
                    .bind(source)
                    .bind(now)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(Consent::from).collect())
                }

                async fn revoke_consents(
                    &self,
                    usage_point: &str,
                ) -> Result<Vec<Consent>, StoreError> {
                    let now = unix_now();
                    let mut tx = self.begin_write().await?;
                    let rows: Vec<ConsentRow> = sqlx::query_as(&format!(
                        "UPDATE consents SET revoked_at = $1 WHERE usage_point = $2 \
                         AND revoked_at IS NULL RETURNING {CONSENT_COLUMNS}"
                    ))
                    .bind(now)
                    .bind(usage_point)
                    .fetch_all(&mut *tx)
                    .await?;
                    let consents: Vec<Consent> = rows.into_iter().map(Consent::from).collect();
                    for grant_id in consents.iter().filter_map(|c| c.grant_id) {
                        sqlx::query(REVOKE_GRANT)
                            .bind(now)
                            .bind(grant_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(consents)
                }

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

pub(super) use impl_store;
