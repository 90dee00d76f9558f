//! The grants area: who may read what, from the config file, an administrator or a consent.
//!
//! Revoked grants are kept, not deleted: the audit log refers to them by id.

use async_trait::async_trait;

use super::StoreError;
use crate::model::Grant;

/// What a reconciliation of the config grants changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConfigGrantChanges {
    pub revoked: Vec<Grant>,
    pub added: Vec<Grant>,
}

/// Access grants.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Makes the unrevoked grants of origin `config` match these (stored as `config` whatever
    /// their origin says), in one transaction: a grant identical to an unrevoked config grant
    /// (same subject, usage point, series, validity and purpose) keeps that grant and its id, so
    /// that ids in the audit log stay meaningful across restarts; config grants no longer listed
    /// are revoked (kept for the audit trail); the others are inserted.
    /// Returns what changed: the grants revoked and the grants added (with their ids), for the
    /// audit log.
    async fn replace_config_grants(
        &self,
        grants: &[Grant],
    ) -> Result<ConfigGrantChanges, StoreError>;

    /// Adds a grant and returns its id.
    async fn add_grant(&self, grant: &Grant) -> Result<i64, StoreError>;

    /// Revokes a grant (kept for the audit trail) and returns it as it was; `None` when no
    /// such active grant exists.
    async fn revoke_grant(&self, id: i64) -> Result<Option<Grant>, StoreError>;

    /// Unrevoked grants of one subject (bare JID), expired ones included: callers check validity
    /// at the time that matters to them.
    async fn grants_for(&self, subject: &str) -> Result<Vec<Grant>, StoreError>;

    /// Unrevoked grants of these subjects (bare JIDs), expired ones included, ordered by id: one
    /// query for many requesters (delivery checks every subscriber it claims).
    async fn grants_of(&self, subjects: &[String]) -> Result<Vec<Grant>, StoreError>;

    /// Every unrevoked grant, ordered by id.
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;
}
