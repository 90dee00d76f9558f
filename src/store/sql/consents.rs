//! The SQL of the consents area ([`ConsentStore`](crate::store::ConsentStore)), the same on
//! both backends.

/// The [`ConsentStore`](crate::store::ConsentStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write.
macro_rules! impl_consents {
    ($store:ident, $connection:ty) => {
        mod consents_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::model::{Consent, ConsentRequest, Grant, OAuthState};
            use $crate::store::common::{count_from_sql, limit_to_sql};
            use $crate::store::rows::{
                unix_now, ConsentRequestRow, ConsentRow, OAuthStateRow, CONSENT_COLUMNS,
                CONSENT_REQUEST_COLUMNS, OAUTH_STATE_COLUMNS,
            };
            use $crate::store::sql::grants::REVOKE_GRANT;
            use $crate::store::{ConsentStore, StoreError};
            use super::sql_helpers::insert_grant;

            #[async_trait]
            impl ConsentStore for $store {
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

                async fn count_active_consents(&self, now: i64) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM consents WHERE revoked_at IS NULL \
                         AND begins_at <= $1 AND $2 < expires_at",
                    )
                    .bind(now)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
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
            }
        }
    };
}

pub(in crate::store) use impl_consents;
