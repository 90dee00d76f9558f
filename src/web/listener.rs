//! The web server's accept loop: what any client of the web port may cost us.
//!
//! `axum::serve` accepts every connection and keeps it as long as the client likes: 1,100 idle
//! connections once exhausted the process's file descriptors, and the XMPP link could not
//! reconnect. Here each connection needs one of `max_connections` slots (a connection beyond
//! them is closed at once, before anything is read); a client has `header_timeout` to send its
//! headers (also the limit of an idle kept-alive connection), and no connection outlives
//! `connection_timeout`. Bodies are capped by the router ([`super::server::router`]).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebConfig;

/// What one connection may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
}

/// File descriptors kept for everything but web clients: the XMPP link, the store's pool,
/// upstream HTTP clients, xAAL sockets, logs.
const RESERVED_FDS: u64 = 256;

impl Limits {
    /// The configured limits, with `max_connections` lowered if the process may not open that
    /// many files besides [`RESERVED_FDS`]. Raises the soft open-files limit to the hard one
    /// first (systemd's default soft limit is 1,024; the unit sets 65,536).
    pub(crate) fn for_this_process(web: &WebConfig) -> Limits {
        let soft = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-files limit");
                1024
            }
        };
        let allowed = soft.saturating_sub(RESERVED_FDS).max(1);
        let max_connections = (web.max_connections as u64).min(allowed);
        if max_connections < web.max_connections as u64 {
            tracing::warn!(
                configured = web.max_connections,
                used = max_connections,
                open_files_limit = soft,
                "web.max_connections lowered to keep file descriptors for the XMPP link and the store; raise LimitNOFILE"
            );
        }
        Limits {
            max_connections: usize::try_from(max_connections).unwrap_or(web.max_connections),
            header_timeout: web.header_timeout.0,
            connection_timeout: web.connection_timeout.0,
        }
    }
}

/// How long to pause accepting after the process ran out of file descriptors (or another
/// accept error), instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown`; connections still open then are closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "web server cannot accept a connection; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "web server busy: connection closed at once");
            drop(tcp);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = http.serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(limits.connection_timeout, connection).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web connection ended"),
                Err(_) => tracing::debug!(%peer, "web connection closed after connection_timeout"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
    connections.shutdown().await;
    Ok(())
}
