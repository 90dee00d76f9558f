//! Delivery: what the store holds for subscribers goes to the XMPP server while the link is up,
//! at a bounded rate, at least once.
//!
//! Two queues feed the link's writer. Publications ([`fanout`]): subscriptions behind their
//! series are claimed (a lease), each gets the publications after its cursor written from the
//! publication's template (`prefix + escaped to + rest`, the payload shared by every
//! subscriber), and its cursor advances once the link reports them written. The outbox
//! ([`outbox`]): single stanzas (the last item on subscribe, subscription-ended notices,
//! retries after a bounce), claimed, written and marked sent the same way. Stanzas the link hands
//! back (it dropped before writing them) and leases that expire (a crash) make them due again, so
//! nothing is lost; after a crash a subscriber may receive again what its last claim had sent,
//! at most [`DEPTH`] publications.
//!
//! Stanza ids tell a bounce where it comes from: `p<subscription>.<seq>.<k>` for the `k`-th
//! stanza of publication `seq`, `m<subscription>.<count>.<since>` for a notice of dropped
//! notifications, `q<outbox id>` for the outbox ([`bounce`]).

mod bounce;
mod fanout;
mod outbox;
mod reports;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::request::Context;
use crate::stanzas::outgoing::Outgoing;

pub(crate) use bounce::bounce;
pub use bounce::MAX_ATTEMPTS;
pub use reports::record_reports;

/// Outbox entries claimed at once.
const CLAIM: usize = 256;
/// Subscriptions claimed at once: each claim costs two statements (the claim, then the advance
/// of its cursors) whatever its size, so a large fan-out with few publications per subscriber
/// pays them per 1,024 subscribers rather than per 256.
const FANOUT_CLAIM: usize = 1024;
/// Publications sent to one subscription per claim: the most a subscriber may receive twice
/// after a crash.
pub const DEPTH: usize = 32;
/// How long a claim holds before another instance (or this one after a crash, on PostgreSQL)
/// may take it.
const LEASE_SECS: i64 = 30;
/// Poll interval when idle (retries whose time has come, work queued by other instances).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The delivery task's wiring.
pub struct Delivery {
    pub ctx: Arc<Context>,
    pub outbound: mpsc::Sender<Outgoing>,
    pub connected: watch::Receiver<bool>,
    /// Woken by each publication and by stanzas handed back.
    pub wake: Arc<Notify>,
    /// Stanzas per second at most (`[xmpp] delivery_rate`).
    pub rate: NonZeroU32,
    /// Publications waiting per subscription at most (`[pubsub] max_pending`); beyond, the
    /// oldest are skipped and the subscriber told how many.
    pub max_pending: usize,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

/// The rate limiter every stanza of the delivery waits for.
type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

impl Delivery {
    /// Sends what is due while the link is up; returns at shutdown.
    pub async fn run(mut self) {
        let limiter = RateLimiter::direct(Quota::per_second(self.rate));
        // A claim must be sent well within its lease, or it would be claimed and sent twice.
        let per_lease = self.rate.get() as usize * LEASE_SECS as usize / 2;
        let outbox_claim = CLAIM.min(per_lease).max(1);
        let fanout_claim = FANOUT_CLAIM.min(per_lease / DEPTH).max(1);
        let mut claims = fanout::ClaimIds::new();
        loop {
            tokio::select! {
                up = self.connected.wait_for(|up| *up) => if up.is_err() { return },
                _ = self.shutdown.cancelled() => return,
            }
            let sent_outbox = match outbox::send(&self, &limiter, outbox_claim).await {
                Some(n) => n,
                None => return,
            };
            let sent_fanout = match fanout::send(&self, &limiter, fanout_claim, claims.next()).await
            {
                Some(n) => n,
                None => return,
            };
            if sent_outbox + sent_fanout > 0 {
                continue;
            }
            fanout::settle(&self).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Waits for `n` stanzas' worth of rate, then queues `out` for the writer; false at shutdown
    /// or when the link is gone for good.
    async fn queue(&self, limiter: &Limiter, n: usize, out: Outgoing) -> bool {
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        tokio::select! {
            ready = limiter.until_n_ready(n) => {
                // More than the burst (a push of many chunks): wait for one at a time instead.
                if ready.is_err() {
                    for _ in 0..n.get() {
                        limiter.until_ready().await;
                    }
                }
            }
            _ = self.shutdown.cancelled() => return false,
        }
        self.outbound.send(out).await.is_ok()
    }
}
