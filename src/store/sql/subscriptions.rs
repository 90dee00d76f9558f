//! The SQL of the subscriptions area ([`SubscriptionStore`](crate::store::SubscriptionStore)),
//! the same on both backends.

/// Adds a subscription, or returns the existing one unchanged (the no-op update makes
/// `RETURNING` give the stored row, and serialises concurrent subscribes): idempotent in one
/// statement. No row at all means the series does not exist. A new subscription's cursor starts
/// at its series' last publication: it receives what is published from now on.
pub(in crate::store) const SUBSCRIBE: &str =
    "INSERT INTO subscriptions (kind, usage_point, series, jid, \
     subid, created_at, series_id, delivered_seq) SELECT $1, $2, $3, $4, $5, $6, r.id, r.published_seq \
     FROM series AS r WHERE r.usage_point = $2 AND r.path = $3 \
     ON CONFLICT (usage_point, series, kind, jid) DO UPDATE SET subid = subscriptions.subid \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

/// `CAST`: PostgreSQL cannot infer the type of a parameter only ever compared with NULL.
pub(in crate::store) const UNSUBSCRIBE: &str = "DELETE FROM subscriptions \
     WHERE usage_point = $1 AND kind = $2 AND jid = $3 \
     AND (CAST($4 AS TEXT) IS NULL OR series = $4) AND (CAST($5 AS TEXT) IS NULL OR subid = $5) \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

pub(in crate::store) const REMOVE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1 \
     RETURNING id, kind, usage_point, series, jid, subid, created_at";

pub(in crate::store) const SUBSCRIPTION: &str = "SELECT id, kind, usage_point, series, jid, \
     subid, created_at FROM subscriptions WHERE id = $1";

pub(in crate::store) const SUBSCRIBERS: &str = "SELECT id, kind, usage_point, series, jid, subid, \
     created_at FROM subscriptions WHERE usage_point = $1 AND series = $2 ORDER BY id";

/// `$1` the bare JID, `$2`..`$3` the range of its full JIDs (see `jid_range`; the PostgreSQL
/// column is COLLATE "C", so both compare bytewise), `$4` an optional usage point.
pub(in crate::store) const SUBSCRIPTIONS_OF: &str =
    "SELECT id, kind, usage_point, series, jid, subid, \
     created_at FROM subscriptions WHERE (jid = $1 OR (jid >= $2 AND jid < $3)) \
     AND (CAST($4 AS TEXT) IS NULL OR usage_point = $4) ORDER BY id";

/// What one requester holds, for its subscription limits: `$1`..`$3` as in [`SUBSCRIPTIONS_OF`];
/// then its subscriptions in all, those on series (`$4`, `$5`), and those of kind `$6` and exact
/// JID `$7` there (0 or 1). One scan of the requester's rows of the jid index.
pub(in crate::store) const SUBSCRIPTION_COUNTS: &str = "SELECT COUNT(*), \
     COUNT(CASE WHEN usage_point = $4 AND series = $5 THEN 1 END), \
     COUNT(CASE WHEN usage_point = $4 AND series = $5 AND kind = $6 AND jid = $7 THEN 1 END) \
     FROM subscriptions WHERE jid = $1 OR (jid >= $2 AND jid < $3)";

/// The [`SubscriptionStore`](crate::store::SubscriptionStore) implementation of `$store`, a backend
/// whose connections are `$connection`, as a child module of the backend (`use super::*`),
/// which provides:
/// - nothing of its own: every statement is shared.
macro_rules! impl_subscriptions {
    ($store:ident, $connection:ty) => {
        mod subscriptions_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::{Subscription, SubscriptionKind};
            use $crate::store::common::{count_from_sql, jid_range};
            use $crate::store::rows::{
                subscriptions_from_rows, unix_now, SubscriptionRow, SUBSCRIPTION_COLUMNS,
            };
            use $crate::store::sql::subscriptions::{
                REMOVE_SUBSCRIPTION, SUBSCRIBE, SUBSCRIBERS, SUBSCRIPTION, SUBSCRIPTIONS_OF,
                SUBSCRIPTION_COUNTS, UNSUBSCRIBE,
            };
            use $crate::store::{StoreError, SubscriptionCounts, SubscriptionStore};

            #[async_trait]
            impl SubscriptionStore for $store {
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

                async fn subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError> {
                    let row: Option<SubscriptionRow> = sqlx::query_as(SUBSCRIPTION)
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
            }
        }
    };
}

pub(in crate::store) use impl_subscriptions;
