//! The systemd side of health, against a notification socket of our own (what systemd listens
//! on for `Type=notify` services): `READY=1` at start, then `WATCHDOG=1` every half period while
//! the component is not wedged, and none while it is.
//!
//! One test in its own binary: it sets `NOTIFY_SOCKET` and `WATCHDOG_USEC`, which are process-wide.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use quoalise_component::health::{self, Health, LinkProgress, Thresholds};
use quoalise_component::store;
use tokio_util::sync::CancellationToken;

fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_then_watchdog_pings_only_while_not_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);
    // A 400 ms watchdog: pings every 200 ms.
    std::env::set_var("WATCHDOG_USEC", "400000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());

    let link = Arc::new(LinkProgress::default());
    link.session_started();
    let health = Health {
        link: link.clone(),
        store: store::open("sqlite::memory:").await.unwrap(),
        thresholds: Thresholds {
            silence: Duration::from_millis(700),
            stall: Duration::from_secs(60),
            store_timeout: Duration::from_secs(2),
            outbox_age: Duration::from_secs(300),
        },
        leadership: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(health::systemd_watchdog(health, shutdown.clone()));

    // Healthy: READY=1, then pings.
    let keep_reading = {
        let link = link.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                link.read();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    keep_reading.await.unwrap();
    let first = received(&socket);
    assert_eq!(
        first.first().map(String::as_str),
        Some("READY=1"),
        "{first:?}"
    );
    let pings = first.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 2, "{first:?}");

    // Wedged: the link reads nothing for longer than its silence limit: no ping at all.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _ = received(&socket);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let wedged = received(&socket);
    assert!(wedged.is_empty(), "no ping while wedged: {wedged:?}");

    // A server that is merely down is not a wedge: pings go on.
    link.session_ended();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = received(&socket);
    assert!(
        down.iter().any(|m| m == "WATCHDOG=1"),
        "pings while reconnecting: {down:?}"
    );
    shutdown.cancel();
    task.await.unwrap();
}
