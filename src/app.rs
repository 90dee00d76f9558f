//! Wiring, supervision and graceful shutdown.
//!
//! Tasks: one per source, the publisher (stores what sources send), the XMPP link (the only
//! socket writer). Shutdown cancels one token; each task finishes its current step and returns.

use std::collections::HashMap;
use std::net::SocketAddr;
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
use crate::audit;
use crate::delivery::{self, Delivery};
use crate::health::{self, Health, LinkProgress, Thresholds};
use crate::lease::{self, Leadership};
use crate::metrics::Metrics;
use crate::model::audit_command;
use crate::publisher::{Feed, Publisher};
use crate::request::Context;
use crate::settings::Settings;
use crate::source::enedis::Enedis;
use crate::source::{SourceDeps, SourceEvent, Upstream};
use crate::web::state::WebState;
use crate::xmpp::connection::{Link, LinkConfig, OutboxReports};
use crate::xmpp::limits::RequestLimits;
use crate::xmpp::router::Router;
use crate::{commands, publisher, store, web, xep};

/// Capacity of the source → publisher channel; a full channel slows sources down.
pub const SOURCE_EVENTS: usize = 1024;
/// How long `/healthz` and the watchdog wait for the store's answer.
const STORE_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
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
pub(crate) async fn serve(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
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
    let sqlite = config.store.url.starts_with("sqlite:");
    // A SQLite file is this process's alone, kept by a file lock while it runs; taken before
    // the store is opened, so that a second instance (say a newer binary started by mistake)
    // neither migrates nor touches the file under the running one.
    let _instance_lock = if sqlite {
        store::instance_lock(&config.store.url).map_err(anyhow::Error::msg)?
    } else {
        None
    };
    let store = store::open(&config.store.url)
        .await
        .context("cannot open the store ([store] url)")?;
    // What a killed predecessor on the same file claimed or led goes now.
    if sqlite {
        let released = store
            .release_all_claims()
            .await
            .context("cannot release the claims of a previous run")?;
        if released > 0 {
            tracing::info!(released, "claims of a previous run released");
        }
        let forgotten = store
            .forget_leases()
            .await
            .context("cannot release the leases of a previous run")?;
        if forgotten > 0 {
            tracing::info!(forgotten, "source leases of a previous run released");
        }
    }
    let sealed = store
        .seal_audit()
        .await
        .context("cannot chain the audit entries written before the hash chain")?;
    if sealed > 0 {
        tracing::info!(sealed, "audit entries from before the hash chain chained");
    }
    let audit_keep = config.audit.keep.map(|k| k.0);
    let changes = store
        .replace_config_grants(&access::grants_from_config(&config.access.grants))
        .await
        .context("cannot load [[access.grant]] into the store")?;
    let events = (changes
        .revoked
        .iter()
        .map(|g| (audit_command::GRANT_REVOKED, g)))
    .chain(
        changes
            .added
            .iter()
            .map(|g| (audit_command::GRANT_ADDED, g)),
    )
    .map(|(command, g)| audit::grant_event("config", command, g))
    .collect::<Vec<_>>();
    store
        .append_audits(&events)
        .await
        .context("cannot record the config's grant changes in the audit log")?;

    let metrics = Metrics::default();
    let access_changed = Arc::new(Notify::new());
    let instance = lease::instance_name(&config.cluster.instance);
    let timing = lease::Timing::from_takeover(config.cluster.takeover.0);
    let leadership = Leadership::new(metrics.clone());
    tracing::info!(%instance, "instance name (in source leases)");
    let deps = SourceDeps {
        store: store.clone(),
        metrics: metrics.clone(),
        access_changed: access_changed.clone(),
    };

    // One channel per source, so the publisher knows who sent what (and a slow source cannot
    // fill another's queue); `events_rx` carries what the caller injects.
    let mut feeds: Vec<Feed> = vec![(None, events_rx)];
    let mut sources = JoinSet::new();
    let mut upstreams: HashMap<String, Arc<dyn Upstream>> = HashMap::new();
    let mut enedis = HashMap::new();
    let mut consent_sources = HashMap::new();
    let mut ingest_sources = Vec::new();
    for (i, source) in config.sources.iter().cloned().enumerate() {
        let id = source.id().to_owned();
        let (tx, rx) = mpsc::channel(SOURCE_EVENTS);
        feeds.push((Some(id.clone()), rx));
        let running = source
            .start(&format!("source[{i}]"), &deps, tx)
            .with_context(|| format!("cannot start source {id}"))?;
        if let Some(upstream) = running.upstream {
            upstreams.insert(id.clone(), upstream);
        }
        if let Some(pages) = running.consent_pages {
            consent_sources.insert(id.clone(), pages);
        }
        ingest_sources.extend(running.ingest);
        // The task runs on one instance at a time: the holder of the source's lease.
        sources.spawn(lease::lead(
            store.clone(),
            lease::source_lease(&id),
            instance.clone(),
            timing,
            running.start,
            leadership.clone(),
            shutdown.child_token(),
        ));
        if let Some(service) = running.enedis {
            enedis.insert(id, service);
        }
    }
    drop(events_tx);

    let router = Router::new(
        Context {
            domain: settings.domain.clone(),
            sources: config.sources.iter().map(|s| s.info()).collect(),
            store: store.clone(),
            access: Access::new(settings.admins.clone(), store.clone()),
            max_stanza_size: config.xmpp.max_stanza_size,
            upstreams,
            consent_sources,
            public_url: config.web.public_url.clone(),
            limits: config.limits.clone(),
            // The web server runs for an enedis source or when asked for (`web_server`).
            export_inline_max: (!enedis.is_empty() || config.web.enabled)
                .then_some(config.privacy.export_inline_max),
        },
        xep::adhoc::Engine::new(commands::all()),
    );
    let ctx = router.shared_context();
    let wake = Arc::new(Notify::new());

    let publisher = tokio::spawn(
        Publisher {
            ctx: ctx.clone(),
            wake: wake.clone(),
            access_changed: access_changed.clone(),
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
        max_depth: config.xmpp.max_depth,
        stall_timeout: config.xmpp.stall_timeout.0,
    };
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND);
    let (connected_tx, connected_rx) = watch::channel(false);
    let (written_tx, written_rx) = mpsc::unbounded_channel();
    let (released_tx, released_rx) = mpsc::unbounded_channel();
    let reports = OutboxReports {
        written: written_tx,
        released: released_tx,
    };
    let progress = Arc::new(LinkProgress::default());
    let health = Health {
        link: progress.clone(),
        store: store.clone(),
        thresholds: Thresholds {
            silence: config.xmpp.ping_interval.0 * 3,
            // Half the watchdog's delay: monitoring sees a stall before the link is torn down.
            stall: config.xmpp.stall_timeout.0 / 2,
            store_timeout: STORE_HEALTH_TIMEOUT,
            outbox_age: config.pubsub.outbox_alert.0,
        },
        leadership,
    };
    let link = Link {
        config: link_config,
        router,
        limits: RequestLimits::new(&config.limits),
        metrics: metrics.clone(),
        reports,
        connected: connected_tx,
        progress,
        errors: Default::default(),
    };
    let link = tokio::spawn(link.run(outbound_rx, outbound_tx.clone(), shutdown.clone()));
    let rate = NonZeroU32::new(config.xmpp.delivery_rate).unwrap_or(NonZeroU32::MIN);
    let sender = tokio::spawn(
        Delivery {
            ctx: ctx.clone(),
            outbound: outbound_tx,
            connected: connected_rx.clone(),
            wake: wake.clone(),
            rate,
            max_pending: config.pubsub.max_pending,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let recorder = tokio::spawn(delivery::record_reports(
        store.clone(),
        written_rx,
        released_rx,
        wake.clone(),
        metrics.clone(),
    ));
    let changes = follow_changes(store.as_ref(), wake.clone(), access_changed.clone())
        .await
        .context("cannot listen to the store's change feed")?;
    // Posted readings are stored and published by the request itself, on whichever instance
    // it reached, so that its answer can say they are: a publisher of its own, sharing the
    // store, the delivery wake-up and the item cap with the sources' one.
    let ingest = if ingest_sources.is_empty() {
        None
    } else {
        Some(Arc::new(
            web::ingest::Ingest::new(
                ingest_sources,
                Publisher {
                    ctx: ctx.clone(),
                    wake: wake.clone(),
                    access_changed: access_changed.clone(),
                    max_items: config.pubsub.max_items,
                },
                metrics.clone(),
            )
            .context("cannot start the ingest's writer")?,
        ))
    };
    let maintenance = tokio::spawn(maintain(
        ctx,
        access_changed,
        audit_keep,
        metrics.clone(),
        shutdown.clone(),
    ));
    let erasure = tokio::spawn(crate::privacy::run(
        store.clone(),
        settings.domain.to_string(),
        settings.retain_after_consent,
        shutdown.clone(),
    ));
    let watchdog = tokio::spawn(health::systemd_watchdog(health.clone(), shutdown.clone()));
    let web = match web_server(
        &settings,
        &store,
        WebSources { enedis, ingest },
        &metrics,
        &wake,
        &connected_rx,
        health,
    )
    .await?
    {
        Some((listener, state)) => {
            let shutdown = shutdown.clone();
            let limits = web::listener::Limits::for_this_process(&config.web);
            tokio::spawn(async move {
                if let Err(e) = web::server::serve(listener, state, limits, shutdown).await {
                    tracing::error!(error = %e, "web server failed");
                }
            })
        }
        None => tokio::spawn(async {}),
    };
    let reconnects = tokio::spawn(count_reconnects(connected_rx, metrics));

    tracing::info!(domain = %settings.domain, sources = config.sources.len(), "component started");
    shutdown.cancelled().await;
    tracing::info!("shutting down");

    let drained = async {
        for (name, task) in [
            ("xmpp link", link),
            ("delivery", sender),
            ("maintenance", maintenance),
            ("erasure", erasure),
            ("web server", web),
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
        reconnects.abort();
        watchdog.abort();
        changes.abort();
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
/// How long publications every subscriber has received are kept, to retry one that bounces
/// with `wait`: bounces come within seconds, and a live series publishes every few seconds, so
/// a day's worth would be most of the database. A later `cancel` bounce still ends its
/// subscription (that needs no publication).
const KEEP_PUBLICATIONS_SECS: i64 = 600;

/// Periodic work: end subscriptions whose grant is gone, forget old sent notifications and
/// delivered publications, keep the audit log (anchor, retention). A source that revokes
/// access (`access_changed`) has subscriptions checked at once.
async fn maintain(
    ctx: Arc<Context>,
    access_changed: Arc<Notify>,
    audit_keep: Option<Duration>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(GRANT_CHECK);
    audit::upkeep(ctx.store.as_ref(), audit_keep, &metrics).await;
    let mut anchored = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = access_changed.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        if anchored.elapsed() >= audit::UPKEEP_EVERY {
            audit::upkeep(ctx.store.as_ref(), audit_keep, &metrics).await;
            anchored = tokio::time::Instant::now();
        }
        match publisher::expire_subscriptions(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "subscriptions ended after their grant"),
            Err(e) => tracing::error!(error = %e, "cannot check subscriptions against grants"),
        }
        if let Err(e) = ctx
            .store
            .purge_sent(crate::time::now() - KEEP_SENT_SECS)
            .await
        {
            tracing::error!(error = %e, "cannot purge sent notifications");
        }
        if let Err(e) = ctx
            .store
            .prune_publications(crate::time::now() - KEEP_PUBLICATIONS_SECS)
            .await
        {
            tracing::error!(error = %e, "cannot prune delivered publications");
        }
    }
}

/// Wakes delivery and the grant check when another instance (or the `admin` command line)
/// changed what they work on (PostgreSQL `LISTEN`, see [`store::Change`]); a task doing nothing
/// on SQLite, whose only instance wakes them in memory.
async fn follow_changes(
    store: &dyn store::Store,
    wake: Arc<Notify>,
    access_changed: Arc<Notify>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let Some(mut changes) = store.listen().await? else {
        return Ok(tokio::spawn(async {}));
    };
    Ok(tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            match change {
                store::Change::Work => wake.notify_one(),
                store::Change::Access => access_changed.notify_one(),
                store::Change::Resync => {
                    wake.notify_one();
                    access_changed.notify_one();
                }
            }
        }
    }))
}

/// What the sources serve on the web server: the consent chains of the `enedis` sources, the
/// devices of the `http` ones.
struct WebSources {
    enedis: HashMap<String, Arc<Enedis>>,
    ingest: Option<Arc<web::ingest::Ingest>>,
}

/// The web server's socket and state: it runs when an `enedis` source needs its pages, when
/// an `http` source's devices post to it, or when `[web] enabled` asks for `/healthz` and
/// `/metrics` alone.
async fn web_server(
    settings: &Settings,
    store: &Arc<dyn store::Store>,
    WebSources { enedis, ingest }: WebSources,
    metrics: &Metrics,
    wake: &Arc<Notify>,
    connected: &watch::Receiver<bool>,
    health: Health,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Arc<WebState>)>> {
    let web = &settings.config.web;
    if enedis.is_empty() && ingest.is_none() && !web.enabled {
        return Ok(None);
    }
    let bind: SocketAddr = web
        .bind
        .parse()
        .with_context(|| format!("invalid web.bind {:?}", web.bind))?;
    // Bound here, before anything runs, so that a port in use stops the start with a clear error.
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on web.bind {bind}"))?;
    tracing::info!(%bind, "web server listening");
    Ok(Some((
        listener,
        Arc::new(WebState {
            domain: settings.domain.clone(),
            store: store.clone(),
            enedis,
            metrics: metrics.clone(),
            wake: wake.clone(),
            connected: connected.clone(),
            max_body: web.max_body,
            health,
            ingest,
        }),
    )))
}

/// Counts the sessions after the first (the link coming back after a loss), for `/metrics`.
async fn count_reconnects(mut connected: watch::Receiver<bool>, metrics: Metrics) {
    let mut sessions = 0u64;
    while connected.changed().await.is_ok() {
        if *connected.borrow_and_update() {
            sessions += 1;
            if sessions > 1 {
                metrics.reconnected();
            }
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
