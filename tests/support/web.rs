//! The web side (`/healthz`, `/metrics`, consent pages, export links) served on a free
//! loopback port, with no XMPP link and no source.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quoalise_component::health::{Health, LinkProgress, Thresholds};
use quoalise_component::metrics::Metrics;
use quoalise_component::store::Store;
use quoalise_component::web::listener::{self, Limits};
use quoalise_component::web::server;
use quoalise_component::web::state::WebState;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Serves the component's web routes on `store` within `limits` (bodies up to 1 KiB) until the
/// returned token is cancelled.
pub async fn serve(store: Arc<dyn Store>, limits: Limits) -> (SocketAddr, CancellationToken) {
    let health = Health {
        link: Arc::new(LinkProgress::default()),
        store: store.clone(),
        thresholds: Thresholds {
            silence: Duration::from_secs(60),
            stall: Duration::from_secs(15),
            store_timeout: Duration::from_secs(2),
            outbox_age: Duration::from_secs(300),
        },
        leadership: Default::default(),
    };
    let state = Arc::new(WebState {
        domain: "quoalise.localhost".parse().unwrap(),
        store,
        enedis: HashMap::new(),
        metrics: Metrics::default(),
        wake: Arc::new(Notify::new()),
        connected: watch::channel(true).1,
        max_body: 1024,
        health,
        ingest: None,
    });
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(listener::serve(
        tcp,
        server::router(state),
        limits,
        shutdown.clone(),
    ));
    (addr, shutdown)
}
