//! The SQL of the privacy area ([`PrivacyStore`](crate::store::PrivacyStore)), the same on both
//! backends.

/// Columns read into an [`Export`](crate::store::Export), in its field order.
pub(in crate::store) const EXPORT_COLUMNS: &str = "token_hash, requester, usage_point, series, \
     range_start, range_end, grant_id, created_at, expires_at";

/// When a consent ended: its revocation if it came before the expiry, else the expiry.
pub(in crate::store) const CONSENT_END: &str =
    "CASE WHEN revoked_at IS NOT NULL AND revoked_at < expires_at THEN revoked_at \
     ELSE expires_at END";

/// True when no consent on usage point `{up}` ended after `{cutoff}` or is still running: every
/// consent on it ended long enough ago. Both placeholders are filled by the caller.
pub(in crate::store) fn all_ended(up: &str, cutoff: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM consents d WHERE d.usage_point = {up} \
         AND (d.revoked_at IS NULL OR d.revoked_at > {cutoff}) AND d.expires_at > {cutoff})"
    )
}

/// The readings' series of usage point `$1`.
const SERIES_OF: &str = "SELECT id FROM series WHERE usage_point = $1";

pub(in crate::store) fn count_readings_of() -> String {
    format!("SELECT COUNT(*), MIN(time), MAX(time) FROM readings WHERE series_id IN ({SERIES_OF})")
}

pub(in crate::store) fn delete_readings_of() -> String {
    format!("DELETE FROM readings WHERE series_id IN ({SERIES_OF})")
}

pub(in crate::store) fn delete_items_of() -> String {
    format!("DELETE FROM items WHERE series_id IN ({SERIES_OF})")
}

/// The [`PrivacyStore`](crate::store::PrivacyStore) implementation of `$store`, a backend whose
/// connections are `$connection`, as a child module of the backend (`use super::*`), which
/// provides:
/// - `$store::begin_write(&self)`: a transaction that may write;
/// - `$store::begin_audit(&self)`: one that also holds the audit log's lock, for an erasure
///   and its audit entry to commit together.
macro_rules! impl_privacy {
    ($store:ident, $connection:ty) => {
        mod privacy_sql {
            use async_trait::async_trait;

            use super::*;
            use $crate::store::sql::privacy::{
                all_ended, count_readings_of, delete_items_of, delete_readings_of, CONSENT_END,
                EXPORT_COLUMNS,
            };
            use $crate::store::{Erasure, Export, ExportClaim, PrivacyStore, StoreError};

            /// How long an expired link stays known, so that a late click is told it expired.
            const KEEP_EXPIRED: i64 = 86_400;

            type ExportRow = (
                String,
                String,
                String,
                String,
                i64,
                i64,
                Option<i64>,
                i64,
                i64,
            );

            fn export_from_row(row: ExportRow) -> Export {
                let (
                    token_hash,
                    requester,
                    usage_point,
                    series,
                    start,
                    end,
                    grant_id,
                    created_at,
                    expires_at,
                ) = row;
                Export {
                    token_hash,
                    requester,
                    usage_point,
                    series,
                    start,
                    end,
                    grant_id,
                    created_at,
                    expires_at,
                }
            }

            #[async_trait]
            impl PrivacyStore for $store {
                async fn add_export(&self, export: &Export) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query("DELETE FROM exports WHERE expires_at < $1")
                        .bind(export.created_at.saturating_sub(KEEP_EXPIRED))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&format!(
                        "INSERT INTO exports ({EXPORT_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(&export.token_hash)
                    .bind(&export.requester)
                    .bind(&export.usage_point)
                    .bind(&export.series)
                    .bind(export.start)
                    .bind(export.end)
                    .bind(export.grant_id)
                    .bind(export.created_at)
                    .bind(export.expires_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn claim_export(
                    &self,
                    token_hash: &str,
                    now: i64,
                ) -> Result<ExportClaim, StoreError> {
                    // One statement: of two downloads at once, on any instances, one wins.
                    let claimed: Option<ExportRow> = sqlx::query_as(&format!(
                        "UPDATE exports SET claimed_at = $1 WHERE token_hash = $2 \
                         AND claimed_at IS NULL AND expires_at > $3 RETURNING {EXPORT_COLUMNS}"
                    ))
                    .bind(now)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(row) = claimed {
                        return Ok(ExportClaim::Claimed(export_from_row(row)));
                    }
                    let found: Option<(Option<i64>,)> =
                        sqlx::query_as("SELECT claimed_at FROM exports WHERE token_hash = $1")
                            .bind(token_hash)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(match found {
                        None => ExportClaim::Unknown,
                        Some((Some(_),)) => ExportClaim::Used,
                        Some((None,)) => ExportClaim::Expired,
                    })
                }

                async fn erasable_usage_points(
                    &self,
                    ended_before: i64,
                ) -> Result<Vec<String>, StoreError> {
                    let ups: Vec<String> = sqlx::query_scalar(&format!(
                        "SELECT DISTINCT usage_point FROM consents c WHERE erased_at IS NULL \
                         AND {} ORDER BY usage_point",
                        all_ended("c.usage_point", "$1")
                    ))
                    .bind(ended_before)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(ups)
                }

                async fn erase_usage_point(
                    &self,
                    usage_point: &str,
                    ended_before: i64,
                    now: i64,
                    actor: &str,
                ) -> Result<Option<Erasure>, StoreError> {
                    let mut tx = self.begin_audit().await?;
                    // The claim: of two instances erasing at once, the second finds nothing
                    // left to mark (PostgreSQL re-reads the rows the first one updated).
                    let ended: Vec<(Option<i64>, i64)> = sqlx::query_as(&format!(
                        "UPDATE consents SET erased_at = $1 WHERE usage_point = $2 \
                         AND erased_at IS NULL AND {} RETURNING grant_id, {CONSENT_END}",
                        all_ended("$3", "$4")
                    ))
                    .bind(now)
                    .bind(usage_point)
                    .bind(usage_point)
                    .bind(ended_before)
                    .fetch_all(&mut *tx)
                    .await?;
                    let Some(&(grant_id, _)) = ended.iter().max_by_key(|(_, end)| *end) else {
                        return Ok(None);
                    };
                    let (_, first, last): (i64, Option<i64>, Option<i64>) =
                        sqlx::query_as(&count_readings_of())
                            .bind(usage_point)
                            .fetch_one(&mut *tx)
                            .await?;
                    let readings = sqlx::query(&delete_readings_of())
                        .bind(usage_point)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(&delete_items_of())
                        .bind(usage_point)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM fetched_days WHERE usage_point = $1")
                        .bind(usage_point)
                        .execute(&mut *tx)
                        .await?;
                    let (start, end) = match (first, last) {
                        (Some(first), Some(last)) => (first, last.saturating_add(1)),
                        _ => (0, 0),
                    };
                    let erasure = Erasure {
                        usage_point: usage_point.to_owned(),
                        readings,
                        start,
                        end,
                        grant_id,
                    };
                    // On record in the same commit: no erasure without its entry.
                    super::audit_sql::append(&mut tx, &[erasure.audit_entry(actor, now)]).await?;
                    tx.commit().await?;
                    Ok(Some(erasure))
                }
            }
        }
    };
}

pub(in crate::store) use impl_privacy;
