//! The upstream area: the calls made to a provider's API (for its rate limits and for the
//! record) and the per-day cache of what was already fetched, so that a day is not asked twice.

use async_trait::async_trait;

use super::StoreError;
use crate::model::UpstreamCall;

/// Upstream calls and the per-day cache.
#[async_trait]
pub trait UpstreamStore: Send + Sync {
    /// Records a call about to be made; returns its id.
    async fn start_upstream_call(&self, call: &UpstreamCall) -> Result<i64, StoreError>;

    /// Completes a recorded call with its outcome.
    async fn finish_upstream_call(
        &self,
        id: i64,
        status: &str,
        code: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Recorded calls of a source with `started_at >= since`, oldest first.
    async fn upstream_calls(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<UpstreamCall>, StoreError>;

    /// Days (`YYYY-MM-DD`) in `[first, end)` already fetched from `api` for a usage point.
    async fn fetched_days(
        &self,
        usage_point: &str,
        api: &str,
        first: &str,
        end: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Marks days as fetched (idempotent).
    async fn mark_fetched(
        &self,
        usage_point: &str,
        api: &str,
        days: &[String],
        at: i64,
    ) -> Result<(), StoreError>;
}
