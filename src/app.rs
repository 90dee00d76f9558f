//! Wiring, supervision and graceful shutdown.
//!
//! Tasks: one per source, the publisher (stores what sources send), the XMPP link (the only
//! socket writer). Shutdown cancels one token; each task finishes its current step and returns.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::Jid;

use crate::access::{self, Access};
use crate::config::Settings;
use crate::publisher::{Feed, Publisher};
use crate::source::SourceEvent;
use crate::xmpp::connection::{self, LinkConfig, OutboxReports};
use crate::xmpp::router::{Context, Router};
use crate::{commands, delivery, publisher, store, xep};

/// Capacity of the source → publisher channel; a full channel slows sources down.
pub const SOURCE_EVENTS: usize = 1024;
/// Capacity of the writer channel; a full channel slows handlers down.
const OUTBOUND: usize = 1024;

/// Runs the component until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let result = serve(settings, shutdown.clone()).await;
    signals.abort();
    result
}

/// Runs the component until `shutdown` is cancelled.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (events_tx, events_rx) = mpsc::channel(SOURCE_EVENTS);
    serve_with_events(settings, shutdown, events_tx, events_rx).await
}

/// Like [`serve`], with the source-event channel given by the caller, who may keep a sender to
/// inject events next to the configured sources (benchmarks drive publications this way).
pub async fn serve_with_events(
    settings: Settings,
    shutdown: CancellationToken,
    events_tx: mpsc::Sender<SourceEvent>,
    events_rx: mpsc::Receiver<SourceEvent>,
) -> anyhow::Result<()> {
    let config = &settings.config;
    let store = store::open(&config.store.url)
        .await
        .context("cannot open the store ([store] url)")?;
    store
        .replace_config_grants(&access::grants_from_config(&config.access.grants))
        .await
        .context("cannot load [[access.grant]] into the store")?;

    let router = Router::new(Context {
        domain: settings.domain.clone(),
        sources: config.sources.iter().map(|s| s.info()).collect(),
        store: store.clone(),
        access: Access::new(settings.admins.clone(), store.clone()),
        commands: xep::adhoc::Engine::new(commands::all()),
        max_stanza_size: config.xmpp.max_stanza_size,
    });
    let ctx = router.shared_context();
    let wake = Arc::new(Notify::new());

    // One channel per source, so the publisher knows who sent what (and a slow source cannot
    // fill another's queue); `events_rx` carries what the caller injects.
    let mut feeds: Vec<Feed> = vec![(None, events_rx)];
    let mut sources = JoinSet::new();
    for source in config.sources.iter().cloned() {
        let (tx, rx) = mpsc::channel(SOURCE_EVENTS);
        feeds.push((Some(source.id().to_owned()), rx));
        sources.spawn(source.run(tx, shutdown.child_token()));
    }
    drop(events_tx);
    let publisher = tokio::spawn(
        Publisher {
            ctx: ctx.clone(),
            wake: wake.clone(),
            max_items: config.pubsub.max_items,
        }
        .run(feeds),
    );

    let ping_target = Jid::from_str(&settings.ping_target)
        .with_context(|| format!("invalid xmpp.ping_target {:?}", settings.ping_target))?;
    let link_config = LinkConfig {
        domain: settings.domain.clone(),
        server: settings.server.clone(),
        secret: settings.secret.clone(),
        ping_target,
        ping_interval: config.xmpp.ping_interval.0,
        max_backoff: config.xmpp.reconnect_max_delay.0,
        max_stanza_size: config.xmpp.max_stanza_size,
    };
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND);
    let (connected_tx, connected_rx) = watch::channel(false);
    let (written_tx, written_rx) = mpsc::unbounded_channel();
    let (released_tx, released_rx) = mpsc::unbounded_channel();
    let reports = OutboxReports {
        written: written_tx.clone(),
        released: released_tx,
    };
    let link = tokio::spawn(connection::run(
        link_config,
        router,
        outbound_rx,
        outbound_tx.clone(),
        reports,
        connected_tx,
        shutdown.clone(),
    ));
    let rate = NonZeroU32::new(config.xmpp.delivery_rate).unwrap_or(NonZeroU32::MIN);
    let sender = tokio::spawn(delivery::send_pending(
        store.clone(),
        outbound_tx,
        connected_rx,
        wake.clone(),
        rate,
        written_tx,
        shutdown.clone(),
    ));
    let recorder = tokio::spawn(delivery::record_reports(
        store.clone(),
        written_rx,
        released_rx,
        wake,
    ));
    let maintenance = tokio::spawn(maintain(ctx, shutdown.clone()));

    tracing::info!(domain = %settings.domain, sources = config.sources.len(), "component started");
    shutdown.cancelled().await;
    tracing::info!("shutting down");

    let drained = async {
        for (name, task) in [
            ("xmpp link", link),
            ("delivery", sender),
            ("maintenance", maintenance),
        ] {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "{name} task failed");
            }
        }
        while let Some(done) = sources.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "source task failed");
            }
        }
        if let Err(e) = publisher.await {
            tracing::error!(error = %e, "publisher task failed");
        }
        // The link and the sender are gone, so the report channels close and the recorder ends
        // after recording the last writes.
        if let Err(e) = recorder.await {
            tracing::error!(error = %e, "delivery recorder task failed");
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within 10 s; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How often subscriptions are checked against grants (expiry, revocation).
const GRANT_CHECK: Duration = Duration::from_secs(60);
/// How long sent outbox entries are kept to match bounces.
const KEEP_SENT_SECS: i64 = 24 * 3600;

/// Periodic work: end subscriptions whose grant is gone, forget old sent notifications.
async fn maintain(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(GRANT_CHECK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match publisher::expire_subscriptions(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "subscriptions ended after their grant"),
            Err(e) => tracing::error!(error = %e, "cannot check subscriptions against grants"),
        }
        if let Err(e) = ctx.store.purge_sent(access::now() - KEEP_SENT_SECS).await {
            tracing::error!(error = %e, "cannot purge sent notifications");
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
