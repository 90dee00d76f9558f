//! Leadership: each source's task runs on exactly one instance among those sharing the store.
//!
//! A source's task (the demo clock, the Enedis daily poll, the xAAL gateway) must not run twice:
//! twice the upstream quota, twice every live reading. Each instance runs a [`lead`] loop per
//! source around a lease in the store (`leases` table, [`LeaseStore`]):
//!
//! - standby: try to take the lease every quarter of `[cluster] takeover`;
//! - leader: start the task, renew the lease every quarter; the lease lasts three quarters.
//!   A renewal refused (someone else holds it: this instance stalled past its lease) stops the
//!   task at once. Renewals failing (the database is gone) stop it before the lease can expire,
//!   one renewal period early, so the old leader has stopped before a new one may start;
//! - a graceful stop ends the task, then releases the lease: another instance takes over at its
//!   next try, not after the expiry.
//!
//! So after a leader dies, another starts the task within `takeover` (lease + one retry period),
//! and two tasks overlap only if clocks differ by more than a renewal period (keep NTP on).
//! What a source produces is idempotent on (series, time), and its state (the Enedis poll and
//! cache) lives in the store, so the new leader goes on from there.
//!
//! On SQLite there is one instance (`crate::app` refuses a second): the lease is taken at once and
//! the loop costs one small write per renewal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

/// Starts a source's task; called again each time this instance becomes leader.
pub(crate) type Start = Box<dyn Fn(CancellationToken) -> BoxFuture<'static, ()> + Send + Sync>;

/// Timing of leases, from `[cluster] takeover`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long a lease lasts after each renewal.
    pub(crate) ttl: Duration,
    /// How often a leader renews and a standby tries.
    pub(crate) period: Duration,
}

impl Timing {
    /// The lease lasts three quarters of `takeover`, renewed (or tried) every quarter: a standby
    /// takes over at most one period after the expiry, within `takeover` of the last renewal.
    pub(crate) fn from_takeover(takeover: Duration) -> Timing {
        Timing {
            ttl: takeover * 3 / 4,
            period: takeover / 4,
        }
    }
}

/// Which leases this instance holds now, for `/healthz` (and mirrored in `/metrics`); clones
/// share it.
#[derive(Clone, Default)]
pub struct Leadership {
    leading: Arc<Mutex<BTreeMap<String, bool>>>,
    metrics: Metrics,
}

impl Leadership {
    pub(crate) fn new(metrics: Metrics) -> Leadership {
        Leadership {
            leading: Arc::default(),
            metrics,
        }
    }

    fn set(&self, name: &str, leading: bool) {
        self.leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), leading);
        self.metrics.set_leading(name, leading);
    }

    /// The leases this instance leads now, by name.
    pub fn led(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|(name, leading)| leading.then_some(name))
            .collect()
    }

    /// Every lease this instance runs a loop for, and whether it leads it now, by name.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The lease name of a source.
pub(crate) fn source_lease(id: &str) -> String {
    format!("source:{id}")
}

/// A name for this instance: the configured one, or host, process and a random part (a
/// restarted process is a new holder, never mistaken for the one that died).
pub(crate) fn instance_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &crate::model::id::random_id()[..8]
    )
}

/// Runs `start`'s task while this instance holds lease `name`, until `shutdown`.
pub(crate) async fn lead(
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    timing: Timing,
    start: Start,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    leadership.set(&name, false);
    loop {
        // Standby: try now, then every period.
        match store
            .acquire_lease(&name, &holder, now_ms(), millis(timing.ttl))
            .await
        {
            Ok(true) => {
                let ended_by_itself = run_leading(
                    store.as_ref(),
                    &name,
                    &holder,
                    timing,
                    &start,
                    &leadership,
                    &shutdown,
                )
                .await;
                if shutdown.is_cancelled() {
                    release(store.as_ref(), &name, &holder).await;
                    return;
                }
                if ended_by_itself {
                    // Give others a chance, and do not restart a failing task in a tight loop.
                    release(store.as_ref(), &name, &holder).await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "cannot try to take the lease; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.period) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Leads until shutdown, the lease lost, or the task's own end (then true).
async fn run_leading(
    store: &dyn Store,
    name: &str,
    holder: &str,
    timing: Timing,
    start: &Start,
    leadership: &Leadership,
    shutdown: &CancellationToken,
) -> bool {
    tracing::info!(lease = %name, instance = %holder, "leading");
    leadership.set(name, true);
    let token = shutdown.child_token();
    let mut task = tokio::spawn(start(token.clone()));
    // The lease runs until `renewed + ttl` by our clock; stop a period before that.
    let mut renewed = tokio::time::Instant::now();
    let ended_by_itself = loop {
        tokio::select! {
            done = &mut task => {
                if let Err(e) = done {
                    tracing::error!(lease = %name, error = %e, "task failed");
                } else if !shutdown.is_cancelled() {
                    tracing::warn!(lease = %name, "task ended by itself; handing the lease back");
                }
                leadership.set(name, false);
                return !shutdown.is_cancelled();
            }
            _ = tokio::time::sleep(timing.period) => {}
            _ = shutdown.cancelled() => break false,
        }
        let attempt = tokio::time::Instant::now();
        match store
            .acquire_lease(name, holder, now_ms(), millis(timing.ttl))
            .await
        {
            Ok(true) => renewed = attempt,
            Ok(false) => {
                tracing::error!(lease = %name, "lease taken by another instance (this one stalled past it); stopping");
                break false;
            }
            Err(e) => {
                let left =
                    (renewed + timing.ttl).saturating_duration_since(tokio::time::Instant::now());
                if left <= timing.period {
                    tracing::error!(lease = %name, error = %e, "cannot renew the lease before it expires; stopping");
                    break false;
                }
                tracing::warn!(lease = %name, error = %e, ?left, "cannot renew the lease; retrying");
            }
        }
    };
    token.cancel();
    if let Err(e) = task.await {
        tracing::error!(lease = %name, error = %e, "task failed");
    }
    leadership.set(name, false);
    tracing::info!(lease = %name, "no longer leading");
    ended_by_itself
}

async fn release(store: &dyn Store, name: &str, holder: &str) {
    if let Err(e) = store.release_lease(name, holder).await {
        tracing::warn!(lease = %name, error = %e, "cannot release the lease; it will expire");
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_takes_over_within_takeover() {
        let t = Timing::from_takeover(Duration::from_secs(30));
        assert_eq!(t.ttl, Duration::from_millis(22_500));
        assert_eq!(t.period, Duration::from_millis(7_500));
        // Last renewal at 0: expiry at ttl, a standby's next try at most one period later.
        assert!(t.ttl + t.period <= Duration::from_secs(30));
    }

    #[test]
    fn instance_names_differ_between_processes_unless_configured() {
        assert_eq!(instance_name("node-a"), "node-a");
        assert_ne!(instance_name(""), instance_name(""));
    }
}
