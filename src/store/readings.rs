//! The readings area: what a series holds, its readings (the history answered by commands) and
//! the items published on its node (answered by PubSub item retrieval and sent as the last item
//! on subscribe).
//!
//! Items live here rather than with the outbox because they are read like readings, per series
//! and newest or oldest first, by requests that never touch the outbox. They are written only
//! by [`OutboxStore::publish`](super::OutboxStore::publish), in the same transaction as the
//! notifications that announce them.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Batch, Item, Reading};

/// Readings and items of series.
#[async_trait]
pub trait ReadingStore: Send + Sync {
    /// Inserts or replaces readings (idempotent on (series, time)) in one transaction. Within a
    /// batch, the last reading of a time wins. Returns how many readings were inserted or changed
    /// value: re-sending stored readings unchanged writes nothing and returns 0. `-0.0` is stored
    /// as `0.0`. Unknown series →
    /// [`StoreError::UnknownSeries`]; a NaN or infinite value → [`StoreError::NonFiniteValue`]
    /// (nothing of the batch is written).
    async fn insert_readings(&self, batch: &Batch) -> Result<usize, StoreError>;

    /// Readings of a series with `start <= time < end`, ascending by time, at most `limit`
    /// (`None` = all). An unknown series has no readings.
    async fn readings(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
        limit: Option<usize>,
    ) -> Result<Vec<Reading>, StoreError>;

    /// How many readings [`ReadingStore::readings`] would return without limit (for planning
    /// answer sizes).
    async fn count_readings(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
    ) -> Result<u64, StoreError>;

    /// The most recent reading of a series, if any.
    async fn last_reading(
        &self,
        usage_point: &str,
        series: &str,
    ) -> Result<Option<Reading>, StoreError>;

    /// Items of a node, newest first, at most `limit` (`None` = all); with `ids`, only the items
    /// with those item ids. An unknown node has no items.
    async fn items(
        &self,
        usage_point: &str,
        series: &str,
        ids: Option<&[String]>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError>;

    /// The most recently published item of a node.
    async fn last_item(&self, usage_point: &str, series: &str) -> Result<Option<Item>, StoreError>;
}
