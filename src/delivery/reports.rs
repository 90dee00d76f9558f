//! What the link reports, recorded in the store: written outbox entries are marked sent,
//! written publications advance their subscription's cursor, and what the link hands back
//! becomes due again at once (outbox entries released, claims ended without advancing).

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::FANOUT_CLAIM;
use crate::metrics::Metrics;
use crate::stanzas::outgoing::Report;
use crate::store::{Advance, Store};
use crate::time::now;

/// Reports recorded per store round trip at most.
const BATCH: usize = 4 * FANOUT_CLAIM;

/// Records reports until the link's senders are gone.
pub async fn record_reports(
    store: Arc<dyn Store>,
    mut written: mpsc::UnboundedReceiver<Report>,
    mut released: mpsc::UnboundedReceiver<Report>,
    wake: Arc<Notify>,
    metrics: Metrics,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Written first: a claim handed back after part of it was written must not be claimed
        // again before that part is recorded, or the written part would go twice.
        tokio::select! {
            biased;
            report = written.recv() => match report {
                Some(report) => {
                    drain(report, &mut written, &mut batch);
                    metrics.notifications_sent(batch.len() as u64);
                    record(store.as_ref(), &batch, true).await;
                    // A claim that ended frees its subscriptions for their next publications.
                    if batch.iter().any(|r| matches!(r, Report::Fanout { last: true, .. })) {
                        wake.notify_one();
                    }
                    batch.clear();
                }
                None => return,
            },
            Some(report) = released.recv() => {
                drain(report, &mut released, &mut batch);
                record(store.as_ref(), &batch, false).await;
                batch.clear();
                wake.notify_one();
            }
        }
    }
}

/// Puts `first` and what else is already queued on `rx` into `batch`, up to [`BATCH`].
fn drain(first: Report, rx: &mut mpsc::UnboundedReceiver<Report>, batch: &mut Vec<Report>) {
    batch.push(first);
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(report) => batch.push(report),
            Err(_) => break,
        }
    }
}

/// Records written (or handed back) stanzas: outbox entries in one statement, cursors in
/// another. A failure leaves them to their lease: a duplicate later, not a loss.
async fn record(store: &dyn Store, batch: &[Report], written: bool) {
    let mut outbox = Vec::new();
    let mut advances = Vec::new();
    for report in batch {
        match *report {
            Report::Outbox(id) => outbox.push(id),
            Report::Fanout {
                subscription,
                seq,
                claim,
                last,
            } => advances.push(if written {
                Advance {
                    subscription,
                    seq,
                    claim,
                    done: last,
                }
            } else {
                // Handed back: the cursor stays, the claim ends so it is claimed again at once.
                Advance {
                    subscription,
                    seq: 0,
                    claim,
                    done: true,
                }
            }),
        }
    }
    if !outbox.is_empty() {
        let result = if written {
            store.mark_sent(&outbox, now()).await
        } else {
            // No attempt is counted: the subscriber never saw them.
            store.release(&outbox).await.map(|_| ())
        };
        if let Err(e) = result {
            tracing::error!(error = %e, entries = outbox.len(), written, "cannot record outbox entries; their lease will");
        }
    }
    if let Err(e) = store.advance(&advances).await {
        tracing::error!(error = %e, subscriptions = advances.len(), written, "cannot move delivery cursors; their lease will");
    }
}
