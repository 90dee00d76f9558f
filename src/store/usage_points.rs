//! The usage points area: the meters and sensors the sources declare, their series (the nodes
//! of the PubSub tree) and whether each is online.
//!
//! Everything else hangs off these rows (readings, items and subscriptions refer to a series),
//! so this is the area other stories set up first.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Series, UsagePoint};

/// Usage points and their series, as sources declare them at every start.
#[async_trait]
pub trait UsagePointStore: Send + Sync {
    /// Inserts or updates a usage point and its series in one transaction. Series not listed are
    /// kept (they may hold history). Fails with [`StoreError::Conflict`] when the id belongs to
    /// another source.
    async fn declare_usage_point(
        &self,
        up: &UsagePoint,
        series: &[Series],
    ) -> Result<(), StoreError>;

    /// Marks a usage point online or offline; false when it does not exist.
    async fn set_online(&self, id: &str, online: bool) -> Result<bool, StoreError>;

    async fn usage_point(&self, id: &str) -> Result<Option<UsagePoint>, StoreError>;

    /// Usage points ordered by id, all of them or those of one source.
    async fn usage_points(&self, source: Option<&str>) -> Result<Vec<UsagePoint>, StoreError>;

    /// The series of a usage point, ordered by path.
    async fn series(&self, usage_point: &str) -> Result<Vec<Series>, StoreError>;
}
