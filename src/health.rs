//! What "healthy" means, for `/healthz` and the systemd watchdog alike.
//!
//! A process can be alive, its socket connected, and still serve nobody (a link wedged once for
//! six minutes while `/healthz` said ok). Health is therefore made of progress, not state:
//! - the XMPP link is healthy when a session is up, something was read from the server within
//!   the silence limit (keepalive pings are answered, so a live server always says something),
//!   and nothing has been waiting to be written for longer than the stall timeout;
//! - the store is healthy when a real query answers within a timeout;
//! - the outbox is healthy when its oldest pending notification is younger than a threshold.
//!
//! The link reports its progress into [`LinkProgress`] (atomics, no lock on its hot path);
//! [`Health::check`] reads it and probes the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lease::Leadership;
use crate::store::Store;

/// What is wrong with the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTrouble {
    /// No session: the link is logging in or waiting to retry, which it does by itself.
    NotConnected,
    /// Something to write and nothing written for this many seconds.
    Stalled(u64),
    /// Nothing read from the server for this many seconds.
    Silent(u64),
}

impl std::fmt::Display for LinkTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkTrouble::NotConnected => f.write_str("not connected"),
            LinkTrouble::Stalled(s) => {
                write!(
                    f,
                    "nothing written for {s}s while there is something to write"
                )
            }
            LinkTrouble::Silent(s) => write!(f, "nothing read from the server for {s}s"),
        }
    }
}

/// What is wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreTrouble {
    /// The query failed (the database is down or refuses): the component retries by itself.
    Failed(String),
    /// The query did not answer in time: something hangs.
    NoAnswer(Duration),
}

impl std::fmt::Display for StoreTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreTrouble::Failed(e) => write!(f, "query failed: {e}"),
            StoreTrouble::NoAnswer(t) => write!(f, "no answer within {}s", t.as_secs_f32()),
        }
    }
}

/// The link's progress, written by the link, read by health checks.
#[derive(Debug)]
pub struct LinkProgress {
    epoch: Instant,
    connected: AtomicBool,
    /// Milliseconds since `epoch` + 1 of each event; 0 = never.
    session_started: AtomicU64,
    last_read: AtomicU64,
    last_write: AtomicU64,
    /// When the pending write began; 0 = nothing waiting to be written.
    waiting_since: AtomicU64,
}

impl Default for LinkProgress {
    fn default() -> Self {
        LinkProgress {
            epoch: Instant::now(),
            connected: AtomicBool::new(false),
            session_started: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
        }
    }
}

impl LinkProgress {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A session was established.
    pub fn session_started(&self) {
        let now = self.now();
        self.session_started.store(now, Ordering::Relaxed);
        self.last_read.store(now, Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
    }

    /// The session ended.
    pub fn session_ended(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// Bytes came from the server.
    pub fn read(&self) {
        self.last_read.store(self.now(), Ordering::Relaxed);
    }

    /// The writer has bytes to write and starts writing them.
    pub(crate) fn write_started(&self) {
        let _ = self.waiting_since.compare_exchange(
            0,
            self.now(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Everything the writer had was written.
    pub(crate) fn write_done(&self) {
        self.last_write.store(self.now(), Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// Why the link is not healthy, if it is not: `silence` is how long the server may say
    /// nothing, `stall` how long a write may make no progress.
    pub fn verdict(&self, silence: Duration, stall: Duration) -> Result<(), LinkTrouble> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err(LinkTrouble::NotConnected);
        }
        let now = self.now();
        let ago = |t: u64| Duration::from_millis(now.saturating_sub(t));
        let waiting = self.waiting_since.load(Ordering::Relaxed);
        if waiting != 0 && ago(waiting) > stall {
            return Err(LinkTrouble::Stalled(ago(waiting).as_secs()));
        }
        let read = self.last_read.load(Ordering::Relaxed);
        if ago(read) > silence {
            return Err(LinkTrouble::Silent(ago(read).as_secs()));
        }
        Ok(())
    }
}

/// The limits health is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// How long the server may say nothing (three keepalive intervals).
    pub silence: Duration,
    /// How long a write may make no progress (`[xmpp] stall_timeout`).
    pub stall: Duration,
    /// How long a store query may take.
    pub store_timeout: Duration,
    /// How long a notification may wait in the outbox before delivery is said to lag.
    pub outbox_age: Duration,
}

/// One check's outcome; `reasons` is empty when healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) xmpp: Result<(), LinkTrouble>,
    pub(crate) store: Result<(), StoreTrouble>,
    /// Err(seconds) when the oldest waiting notification is older than the threshold.
    pub(crate) outbox: Result<(), u64>,
    /// The leases this instance leads (`source:<id>`): information, not health, since with
    /// several instances a healthy one may lead none.
    pub(crate) leads: Vec<String>,
}

impl Report {
    /// Serving everybody: what `/healthz` answers 200 for.
    pub(crate) fn healthy(&self) -> bool {
        self.xmpp.is_ok() && self.store.is_ok() && self.outbox.is_ok()
    }

    /// Stuck in a way only a restart cures: a link that is up but makes no progress, or a
    /// store query that hangs. A server or database that is down is not that: the component
    /// retries by itself, and restarting it would not bring them back.
    pub(crate) fn wedged(&self) -> bool {
        matches!(
            self.xmpp,
            Err(LinkTrouble::Stalled(_)) | Err(LinkTrouble::Silent(_))
        ) || matches!(self.store, Err(StoreTrouble::NoAnswer(_)))
    }

    /// The report as JSON for `/healthz`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        fn part<E: std::fmt::Display>(r: &Result<(), E>) -> serde_json::Value {
            match r {
                Ok(()) => serde_json::json!("ok"),
                Err(reason) => serde_json::json!(reason.to_string()),
            }
        }
        serde_json::json!({
            "status": if self.healthy() { "ok" } else { "unhealthy" },
            "xmpp": part(&self.xmpp),
            "store": part(&self.store),
            "outbox": match self.outbox {
                Ok(()) => serde_json::json!("ok"),
                Err(age) => serde_json::json!(format!("oldest waiting notification queued {age}s ago")),
            },
            "leads": self.leads,
        })
    }
}

/// Everything a health check looks at.
#[derive(Clone)]
pub struct Health {
    pub link: Arc<LinkProgress>,
    pub store: Arc<dyn Store>,
    pub thresholds: Thresholds,
    /// Which sources this instance runs now (the others run on another instance).
    pub leadership: Leadership,
}

impl Health {
    pub(crate) async fn check(&self) -> Report {
        let t = self.thresholds;
        // The store's probe is a real query: the queue time of the oldest waiting notification.
        let probe = crate::store::undelivered(self.store.as_ref());
        let (store, oldest) = match tokio::time::timeout(t.store_timeout, probe).await {
            Ok(Ok((_, oldest))) => (Ok(()), oldest),
            Ok(Err(e)) => (Err(StoreTrouble::Failed(e.to_string())), None),
            Err(_) => (Err(StoreTrouble::NoAnswer(t.store_timeout)), None),
        };
        let age = oldest
            .map(|queued| u64::try_from(chrono::Utc::now().timestamp() - queued).unwrap_or(0));
        Report {
            xmpp: self.link.verdict(t.silence, t.stall),
            store,
            outbox: match age {
                Some(age) if age > t.outbox_age.as_secs() => Err(age),
                _ => Ok(()),
            },
            leads: self.leadership.led(),
        }
    }
}

/// Tells systemd the component is ready, then pings its watchdog unless the component is
/// [wedged](Report::wedged), so that a wedged process is restarted (`Type=notify`,
/// `WatchdogSec=` in the unit). Does nothing when not started by systemd.
pub async fn systemd_watchdog(health: Health, shutdown: tokio_util::sync::CancellationToken) {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "no systemd notification socket");
    }
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec) / 2;
    tracing::info!(?period, "systemd watchdog enabled");
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let report = health.check().await;
        if report.wedged() {
            tracing::error!(report = %report.to_json(), "wedged: not pinging the systemd watchdog");
        } else {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_healthy_only_while_it_progresses() {
        let link = LinkProgress::default();
        let (silence, stall) = (Duration::from_millis(200), Duration::from_millis(100));
        assert_eq!(link.verdict(silence, stall), Err(LinkTrouble::NotConnected));
        link.session_started();
        assert_eq!(link.verdict(silence, stall), Ok(()));
        // A write that makes no progress for longer than the stall timeout.
        link.write_started();
        std::thread::sleep(Duration::from_millis(150));
        link.read();
        let verdict = link.verdict(silence, stall);
        assert!(
            matches!(verdict, Err(LinkTrouble::Stalled(_))),
            "{verdict:?}"
        );
        link.write_done();
        assert_eq!(link.verdict(silence, stall), Ok(()));
        // A server that says nothing.
        std::thread::sleep(Duration::from_millis(250));
        let verdict = link.verdict(silence, stall);
        assert!(
            matches!(verdict, Err(LinkTrouble::Silent(_))),
            "{verdict:?}"
        );
        link.read();
        assert_eq!(link.verdict(silence, stall), Ok(()));
        link.session_ended();
        assert!(link.verdict(silence, stall).is_err());
    }

    #[test]
    fn reports_say_why_and_only_wedges_call_for_a_restart() {
        let report = |xmpp, store| Report {
            xmpp,
            store,
            outbox: Ok(()),
            leads: vec!["source:demo".to_owned()],
        };
        let silent = report(Err(LinkTrouble::Silent(61)), Ok(()));
        assert!(!silent.healthy() && silent.wedged());
        let json = silent.to_json();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["xmpp"], "nothing read from the server for 61s");
        assert_eq!(json["store"], "ok");
        assert_eq!(json["leads"], serde_json::json!(["source:demo"]));
        assert!(report(Err(LinkTrouble::Stalled(20)), Ok(())).wedged());
        let down = report(Err(LinkTrouble::NotConnected), Ok(()));
        assert!(!down.healthy() && !down.wedged());
        let db_down = report(Ok(()), Err(StoreTrouble::Failed("refused".into())));
        assert!(!db_down.healthy() && !db_down.wedged());
        let db_hangs = report(Ok(()), Err(StoreTrouble::NoAnswer(Duration::from_secs(2))));
        assert!(db_hangs.wedged());
        assert_eq!(report(Ok(()), Ok(())).to_json()["status"], "ok");
        let lagging = Report {
            xmpp: Ok(()),
            store: Ok(()),
            outbox: Err(400),
            leads: vec![],
        };
        assert!(!lagging.healthy() && !lagging.wedged());
        assert_eq!(
            lagging.to_json()["outbox"],
            "oldest waiting notification queued 400s ago"
        );
    }
}
