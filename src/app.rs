//! Wiring, supervision and graceful shutdown.
//!
//! Tasks: one per source, the publisher (stores what sources send), the XMPP link (the only
//! socket writer). Shutdown cancels one token; each task finishes its current step and returns.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::Jid;

use crate::access::{self, Access};
use crate::config::Settings;
use crate::xmpp::connection::{self, LinkConfig};
use crate::xmpp::router::{Context, Router};
use crate::{commands, publisher, store, xep};

/// Capacity of the source → publisher channel; a full channel slows sources down.
const SOURCE_EVENTS: usize = 1024;
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

    let (events_tx, events_rx) = mpsc::channel(SOURCE_EVENTS);
    let publisher = tokio::spawn(publisher::run(store.clone(), events_rx));
    let mut sources = JoinSet::new();
    for source in config.sources.iter().cloned() {
        sources.spawn(source.run(events_tx.clone(), shutdown.child_token()));
    }
    drop(events_tx);

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
    let (connected_tx, _connected_rx) = watch::channel(false);
    let link = tokio::spawn(connection::run(
        link_config,
        router,
        outbound_rx,
        outbound_tx,
        connected_tx,
        shutdown.clone(),
    ));

    tracing::info!(domain = %settings.domain, sources = config.sources.len(), "component started");
    shutdown.cancelled().await;
    tracing::info!("shutting down");

    let drained = async {
        if let Err(e) = link.await {
            tracing::error!(error = %e, "xmpp link task failed");
        }
        while let Some(done) = sources.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "source task failed");
            }
        }
        if let Err(e) = publisher.await {
            tracing::error!(error = %e, "publisher task failed");
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
