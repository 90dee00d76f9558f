//! Erasure at consent end: the readings fetched under a consent go once it has ended (expiry,
//! revocation by an admin, or the provider's ADAM-DC-0008) for `[privacy] retain_after_consent`,
//! unless another consent on the same usage point is still running or ended more recently.
//!
//! Readings are not tagged with the consent they were fetched under (a day fetched once serves
//! every consent), so the unit of erasure is the usage point: every series' readings, its
//! published items, and the fetched-days cache (so that a later consent fetches again rather
//! than trusting days that are gone). The store claims the ended consents in the same
//! transaction as the deletion, so that several instances (or a restart) erase and audit one end
//! once; each erasure is one audit entry, in the same transaction, command `erasure`, `records` the readings deleted,
//! requester the component's own domain, under the grant of the consent that ended last.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Erasure, Store, StoreError};

pub use crate::model::audit_command::ERASURE;
/// How often erasures are looked for, at most: a retention is counted in days.
const LONGEST_CHECK: Duration = Duration::from_secs(60);
/// How often at least, for the short retentions of tests and demonstrations.
const SHORTEST_CHECK: Duration = Duration::from_secs(1);

/// How often the task looks: a quarter of the retention, between one second and one minute, so
/// that data is never kept much longer than promised.
pub(crate) fn check_period(retain: Duration) -> Duration {
    (retain / 4).clamp(SHORTEST_CHECK, LONGEST_CHECK)
}

/// Erases what is due at `now`, auditing each erasure as done by `requester` (the component's
/// domain); returns the erasures. A usage point that fails is logged and left for the next
/// round; the others go on.
pub async fn erase_due(
    store: &dyn Store,
    requester: &str,
    retain: Duration,
    now: i64,
) -> Result<Vec<Erasure>, StoreError> {
    let retain = i64::try_from(retain.as_secs()).unwrap_or(i64::MAX);
    let ended_before = now.saturating_sub(retain);
    let mut done = Vec::new();
    for usage_point in store.erasable_usage_points(ended_before).await? {
        let erasure = match store
            .erase_usage_point(&usage_point, ended_before, now, requester)
            .await
        {
            Ok(Some(erasure)) => erasure,
            // Another instance was first, or a consent came meanwhile.
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, usage_point, "cannot erase readings after consent end");
                continue;
            }
        };
        tracing::info!(
            usage_point = %erasure.usage_point,
            readings = erasure.readings,
            "readings erased after the end of their consents"
        );
        done.push(erasure);
    }
    Ok(done)
}

/// The periodic task: [`erase_due`] every [`check_period`] until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    requester: String,
    retain: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(check_period(retain));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = erase_due(store.as_ref(), &requester, retain, crate::time::now()).await {
            tracing::error!(error = %e, "erasure at consent end failed; trying again later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_retentions_are_checked_often_long_ones_every_minute() {
        assert_eq!(check_period(Duration::ZERO), SHORTEST_CHECK);
        assert_eq!(check_period(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(
            check_period(Duration::from_secs(30 * 86_400)),
            LONGEST_CHECK
        );
    }
}
