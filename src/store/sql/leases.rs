//! The SQL of the leases area ([`LeaseStore`](crate::store::LeaseStore)), the same on both
//! backends: one upsert whose `WHERE` lets it change the row only when the lease is free,
//! expired or the caller's own.

/// Takes or renews a lease: `$1` name, `$2` holder, `$3` now, `$4` expiry (ms). A new holder
/// gets a new `acquired_at`; a renewal keeps it. Returns the holder afterwards only when the
/// statement wrote the row (the caller's), nothing otherwise.
pub(in crate::store) const ACQUIRE: &str =
    "INSERT INTO leases (name, holder, acquired_at, expires_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
     acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at \
     ELSE excluded.acquired_at END \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at \
     RETURNING holder";

/// The [`LeaseStore`](crate::store::LeaseStore) implementation of `$store`, a backend with a
/// `pool` field, as a child module of the backend (`use super::*`).
macro_rules! impl_leases {
    ($store:ident, $connection:ty) => {
        mod leases_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::store::sql::leases::ACQUIRE;
            use $crate::store::{Lease, LeaseStore, StoreError};

            #[async_trait]
            impl LeaseStore for $store {
                async fn acquire_lease(
                    &self,
                    name: &str,
                    holder: &str,
                    now_ms: i64,
                    ttl_ms: i64,
                ) -> Result<bool, StoreError> {
                    let won: Option<String> = sqlx::query_scalar(ACQUIRE)
                        .bind(name)
                        .bind(holder)
                        .bind(now_ms)
                        .bind(now_ms.saturating_add(ttl_ms))
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(won.as_deref() == Some(holder))
                }

                async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                        .bind(name)
                        .bind(holder)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn forget_leases(&self) -> Result<u64, StoreError> {
                    Ok(sqlx::query("DELETE FROM leases")
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }

                async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
                    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                        "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(name, holder, acquired_at, expires_at)| Lease {
                            name,
                            holder,
                            acquired_at,
                            expires_at,
                        })
                        .collect())
                }
            }
        }
    };
}
pub(in crate::store) use impl_leases;
