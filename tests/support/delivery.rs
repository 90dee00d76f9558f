//! The real delivery task without a link: what it queues for the writer is collected and
//! reported written, as the link would, so that tests see exactly what subscribers would get.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use quoalise_component::delivery::{record_reports, Delivery};
use quoalise_component::metrics::Metrics;
use quoalise_component::request::Context;
use quoalise_component::stanzas::outgoing::Payload;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

/// How long without a new stanza ends a delivery round.
const QUIET: Duration = Duration::from_millis(300);

/// Runs delivery until it has nothing more to send; returns the stanzas in the order the writer
/// would write them, all of them recorded as written. A bounce of one of them, through the
/// router, reaches its origin.
pub async fn deliver(ctx: Arc<Context>) -> Vec<Element> {
    deliver_with(ctx, 1000, Metrics::default()).await
}

/// [`deliver`] with `[pubsub] max_pending` set to `max_pending`, counting into `metrics`.
pub async fn deliver_with(ctx: Arc<Context>, max_pending: usize, metrics: Metrics) -> Vec<Element> {
    let (outbound, mut queued) = mpsc::channel(100_000);
    let (_up, connected) = watch::channel(true);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        Delivery {
            ctx: ctx.clone(),
            outbound,
            connected,
            wake: Arc::new(Notify::new()),
            rate: NonZeroU32::MAX,
            max_pending,
            metrics,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let (written, written_rx) = mpsc::unbounded_channel();
    let (_released, released_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_reports(
        ctx.store.clone(),
        written_rx,
        released_rx,
        Arc::new(Notify::new()),
        Default::default(),
    ));
    let mut stanzas = Vec::new();
    while let Ok(Some(out)) = tokio::time::timeout(QUIET, queued.recv()).await {
        stanzas.extend(elements(&out.payload));
        if let Some(report) = out.report {
            written.send(report).unwrap();
        }
    }
    shutdown.cancel();
    task.await.unwrap();
    drop(written);
    recorder.await.unwrap();
    stanzas
}

/// The stanzas of a payload (a push template may hold several).
fn elements(payload: &Payload) -> Vec<Element> {
    if let Payload::Tree(el) = payload {
        return vec![el.clone()];
    }
    let mut bytes = Vec::new();
    assert!(payload.append_wire(&mut bytes));
    let text = String::from_utf8(bytes).unwrap();
    // One root per parse: wrap the stanzas, then take them out.
    let wrapped: Element = format!("<w xmlns='jabber:component:accept'>{text}</w>")
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    wrapped.children().cloned().collect()
}
