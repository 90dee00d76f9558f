//! The SQL of the grants area ([`GrantStore`](crate::store::GrantStore)), the same on both
//! backends but for the lock that keeps instances from reconciling the config grants twice.

/// Revokes grant `$2` at time `$1`, unless already revoked.
pub(in crate::store) const REVOKE_GRANT: &str =
    "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

/// The [`GrantStore`](crate::store::GrantStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_config_grants(&self)`: a transaction that may write, safe against other
///   instances reconciling the config grants at the same moment;
/// - `GRANTS_OF_SUBJECTS` (`$1` a list of subjects as `item_id_list` gives it) and
///   `item_id_list(&[String])`.
macro_rules! impl_grants {
    ($store:ident, $connection:ty) => {
        mod grants_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::{Grant, GrantOrigin};
            use $crate::store::common::{plan_config_grants, ConfigGrantPlan};
            use $crate::store::rows::{grants_from_rows, unix_now, GrantRow, GRANT_COLUMNS};
            use $crate::store::sql::grants::REVOKE_GRANT;
            use $crate::store::{ConfigGrantChanges, GrantStore, StoreError};
            use super::sql_helpers::insert_grant;

            #[async_trait]
            impl GrantStore for $store {
                async fn replace_config_grants(
                    &self,
                    grants: &[Grant],
                ) -> Result<ConfigGrantChanges, StoreError> {
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
                    let mut changes = ConfigGrantChanges::default();
                    for id in revoke {
                        sqlx::query(REVOKE_GRANT)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        changes
                            .revoked
                            .extend(existing.iter().filter(|g| g.id == Some(id)).cloned());
                    }
                    for grant in insert {
                        // Stored as config whatever the caller set, or the next reconciliation
                        // would miss them and they would pile up at every start.
                        let id = insert_grant(&mut tx, grant, GrantOrigin::Config, now).await?;
                        changes.added.push(Grant {
                            id: Some(id),
                            origin: GrantOrigin::Config,
                            ..grant.clone()
                        });
                    }
                    tx.commit().await?;
                    Ok(changes)
                }

                async fn add_grant(&self, grant: &Grant) -> Result<i64, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    insert_grant(&mut conn, grant, grant.origin, unix_now()).await
                }

                async fn revoke_grant(&self, id: i64) -> Result<Option<Grant>, StoreError> {
                    let row: Option<GrantRow> = sqlx::query_as(&format!(
                        "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                         RETURNING {GRANT_COLUMNS}"
                    ))
                    .bind(unix_now())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(Grant::try_from).transpose()
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

                async fn grants_of(&self, subjects: &[String]) -> Result<Vec<Grant>, StoreError> {
                    if subjects.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows: Vec<GrantRow> = sqlx::query_as(GRANTS_OF_SUBJECTS)
                        .bind(item_id_list(subjects))
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
        }
    };
}

pub(in crate::store) use impl_grants;
