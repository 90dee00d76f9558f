//! The SQL both backends speak alike, written once, one file per area.
//!
//! SQLite and PostgreSQL accept the same statements for almost everything the store does, and
//! sqlx binds `$n` placeholders on both. What differs (multi-row upserts, list parameters, the
//! outbox claim, locking, transaction start) stays in each backend; the rest is here.
//!
//! Why macros and not generic functions: a function generic over sqlx's `Database` needs a
//! bound for every type it binds or decodes and for the executor of each connection kind, on
//! every function, and `async_trait` futures must still be `Send`. Each area's macro instead
//! expands the same text inside each backend against its concrete pool and connection types, so
//! each backend's queries stay plain, concrete and checked at run time by its own tests. Each
//! area's macro says what the backend must provide for it; [`impl_store`] expands them all.

pub(super) mod audit;
pub(super) mod consents;
pub(super) mod fanout;
pub(super) mod grants;
pub(super) mod leases;
pub(super) mod outbox;
pub(super) mod privacy;
pub(super) mod readings;
pub(super) mod sessions;
pub(super) mod subscriptions;
pub(super) mod upstream;
pub(super) mod usage_points;

/// The id of a series, which readings and items reference.
pub(in crate::store) const SERIES_ID: &str =
    "SELECT id FROM series WHERE usage_point = $1 AND path = $2";

/// Every area of the [`Store`](crate::store::Store) for `$store`, a backend whose connections
/// are `$connection`, and the helpers several areas share (`sql_helpers`). The backend provides
/// what each area's macro lists, and a `pool` field on `$store`.
macro_rules! impl_store {
    ($store:ident, $connection:ty) => {
        mod sql_helpers {
            use super::*;
            use $crate::model::{Grant, GrantOrigin};
            use $crate::store::sql::SERIES_ID;
            use $crate::store::StoreError;

            /// The id of series (`usage_point`, `series`), or [`StoreError::UnknownSeries`].
            pub(super) async fn series_id(
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

            /// Inserts a grant with this origin (a consent's grant is written with its consent,
            /// a config grant whatever origin it says); returns its id.
            pub(super) async fn insert_grant(
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
        }

        $crate::store::sql::usage_points::impl_usage_points!($store, $connection);
        $crate::store::sql::readings::impl_readings!($store, $connection);
        $crate::store::sql::subscriptions::impl_subscriptions!($store, $connection);
        $crate::store::sql::outbox::impl_outbox!($store, $connection);
        $crate::store::sql::fanout::impl_fanout!($store, $connection);
        $crate::store::sql::grants::impl_grants!($store, $connection);
        $crate::store::sql::leases::impl_leases!($store, $connection);
        $crate::store::sql::consents::impl_consents!($store, $connection);
        $crate::store::sql::upstream::impl_upstream!($store, $connection);
        $crate::store::sql::audit::impl_audit!($store, $connection);
        $crate::store::sql::sessions::impl_sessions!($store, $connection);
        $crate::store::sql::privacy::impl_privacy!($store, $connection);
    };
}

pub(super) use impl_store;
