//! The XEP-0114 link against a fake server on loopback that plays the server's side: handshake,
//! floods of requests, poison stanzas, and a server that stops reading for a while.
//!
//! What these tests hold the link to: every request is answered (a result or a limit error),
//! nothing ends the session but the watchdog, the watchdog fires only when there was something
//! to write and nothing could be written for the stall timeout, and no outbox entry is lost
//! (each is reported written or released).

mod support;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use quoalise_component::config::{LimitsConfig, Secret};
use quoalise_component::health::{LinkProgress, LinkTrouble};
use quoalise_component::metrics::Metrics;
use quoalise_component::stanzas::outgoing::{Outgoing, Payload, Report};
use quoalise_component::xmpp::connection::{Link, LinkConfig, OutboxReports};
use quoalise_component::xmpp::framing::{Frame, Framer};
use quoalise_component::xmpp::limits::RequestLimits;
use quoalise_component::xmpp::parse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::{BareJid, Jid};

use support::xml::stanza_error;

const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='fake-1' from='quoalise.localhost'>";

/// The server's end of one session: reads the component's stanzas through the same framer.
struct ServerSide {
    socket: TcpStream,
    framer: Framer,
    frames: Vec<Frame>,
}

impl ServerSide {
    /// Accepts the component and completes the handshake (any digest is accepted).
    async fn accept(listener: &TcpListener) -> ServerSide {
        let (socket, _) = listener.accept().await.unwrap();
        let mut side = ServerSide {
            socket,
            framer: Framer::new(64, 1 << 20),
            frames: Vec::new(),
        };
        assert!(matches!(side.next().await, Frame::Header(_)));
        side.socket
            .write_all(SERVER_HEADER.as_bytes())
            .await
            .unwrap();
        let handshake = side.stanza().await;
        assert_eq!(handshake.name(), "handshake");
        side.socket.write_all(b"<handshake/>").await.unwrap();
        side
    }

    async fn next(&mut self) -> Frame {
        let mut buf = vec![0u8; 64 * 1024];
        while self.frames.is_empty() {
            let n = self.socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the component closed the stream");
            self.framer.push(&buf[..n], &mut self.frames).unwrap();
        }
        self.frames.remove(0)
    }

    async fn stanza(&mut self) -> Element {
        loop {
            match self.next().await {
                Frame::Stanza(bytes) => return parse::stanza(&bytes).unwrap(),
                Frame::Header(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads stanzas until every id of `ids` was answered; answers our keepalive pings on the
    /// way. Returns the answers by id.
    async fn answers(&mut self, ids: &HashSet<String>) -> Vec<Element> {
        let mut seen = Vec::new();
        let mut left = ids.clone();
        while !left.is_empty() {
            let el = self.stanza().await;
            let id = el.attr("id").unwrap_or_default().to_owned();
            if id.starts_with("keepalive-") {
                continue;
            }
            if left.remove(&id) {
                seen.push(el);
            }
        }
        seen
    }

    async fn send(&mut self, text: &str) {
        self.socket.write_all(text.as_bytes()).await.unwrap();
    }
}

/// A running link under test and the ends the rest of the component would hold.
struct Harness {
    listener: TcpListener,
    outbound: mpsc::Sender<Outgoing>,
    written: mpsc::UnboundedReceiver<Report>,
    released: mpsc::UnboundedReceiver<Report>,
    metrics: Metrics,
    progress: Arc<LinkProgress>,
    shutdown: CancellationToken,
}

async fn start_link(stall_timeout: Duration, limits: LimitsConfig) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (router, _store) = support::router::demo_router(2, &["*"], 512 * 1024).await;
    let config = LinkConfig {
        domain: BareJid::from_str(support::router::D).unwrap(),
        server: listener.local_addr().unwrap().to_string(),
        secret: Secret::new("s3cret"),
        ping_target: Jid::from_str("localhost").unwrap(),
        ping_interval: Duration::from_secs(20),
        max_backoff: Duration::from_secs(1),
        max_stanza_size: 512 * 1024,
        max_depth: 64,
        stall_timeout,
    };
    let (outbound_tx, outbound_rx) = mpsc::channel(1024);
    let (written_tx, written) = mpsc::unbounded_channel();
    let (released_tx, released) = mpsc::unbounded_channel();
    let metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    let progress = Arc::new(LinkProgress::default());
    let link = Link {
        config,
        router,
        limits: RequestLimits::new(&limits),
        metrics: metrics.clone(),
        reports: OutboxReports {
            written: written_tx,
            released: released_tx,
        },
        connected: watch::channel(false).0,
        progress: progress.clone(),
        errors: Default::default(),
    };
    tokio::spawn(link.run(outbound_rx, outbound_tx.clone(), shutdown.clone()));
    Harness {
        listener,
        outbound: outbound_tx,
        written,
        released,
        metrics,
        progress,
        shutdown,
    }
}

fn disco(id: &str, from: &str) -> String {
    format!("<iq type='get' id='{id}' from='{from}' to='quoalise.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
}

/// A notification as the delivery task would queue it, about `size` bytes.
fn notification(outbox_id: i64, size: usize) -> Outgoing {
    let el: Element = format!(
        "<message xmlns='jabber:component:accept' type='headline' id='q{outbox_id}' from='99999000000001@quoalise.localhost' to='alice@localhost'><body>{}</body></message>",
        "x".repeat(size)
    )
    .parse()
    .unwrap();
    Outgoing {
        payload: Payload::Tree(el),
        report: Some(Report::Outbox(outbox_id)),
    }
}

/// The outbox id a report is about (the link is only given outbox stanzas here).
fn outbox_id(report: Report) -> i64 {
    match report {
        Report::Outbox(id) => id,
        other => panic!("not an outbox report: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_whole_and_others_keep_their_latency() {
    let h = start_link(Duration::from_secs(30), LimitsConfig::default()).await;
    let mut server = ServerSide::accept(&h.listener).await;
    let mut flood = String::new();
    let mut ids = HashSet::new();
    for i in 0..3000 {
        let id = format!("f{i}");
        flood.push_str(&disco(&id, "bob@localhost/flood"));
        ids.insert(id);
    }
    flood.push_str(&disco("carol-1", "carol@localhost/r"));
    ids.insert("carol-1".into());
    let started = Instant::now();
    server.send(&flood).await;
    let answers = timeout(Duration::from_secs(60), server.answers(&ids))
        .await
        .expect("every request of the flood is answered");
    let mut results = 0;
    let mut limited = 0;
    for el in &answers {
        match el.attr("type") {
            Some("result") => results += 1,
            Some("error") => {
                assert_eq!(stanza_error(el).condition, "resource-constraint");
                limited += 1;
            }
            other => panic!("unexpected answer type {other:?}"),
        }
    }
    assert_eq!(results + limited, 3001);
    assert!(results >= 8, "some of the flood is served: {results}");
    assert!(limited > 0, "the flood is over its limits");
    let carol = answers
        .iter()
        .find(|el| el.attr("id") == Some("carol-1"))
        .unwrap();
    assert_eq!(
        carol.attr("type"),
        Some("result"),
        "another requester is not limited by bob's flood"
    );
    eprintln!("flood of 3,001 answered in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30));
    // The session is still the first one, and answers again.
    let again: HashSet<String> = ["after".to_owned()].into();
    server.send(&disco("after", "carol@localhost/r")).await;
    let answer = timeout(Duration::from_secs(5), server.answers(&again))
        .await
        .unwrap();
    assert_eq!(answer[0].attr("type"), Some("result"));
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_stanzas_are_answered_and_the_stream_goes_on() {
    let h = start_link(Duration::from_secs(30), LimitsConfig::default()).await;
    let mut server = ServerSide::accept(&h.listener).await;
    let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    let long = "n".repeat(200 * 1024);
    let name = "e".repeat(9 * 1024);
    let cases = [
        ("deep-600", format!("<iq type='get' id='deep-600' from='bob@localhost/r' to='quoalise.localhost'>{}</iq>", deep(600)), Some("bad-request")),
        ("deep-30000", format!("<iq type='set' id='deep-30000' from='bob@localhost/r' to='quoalise.localhost'>{}</iq>", deep(30_000)), Some("bad-request")),
        ("long-node", format!("<iq type='get' id='long-node' from='bob@localhost/r' to='quoalise.localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{long}'/></iq>"), Some("item-not-found")),
        ("long-name", format!("<iq type='get' id='long-name' from='bob@localhost/r' to='quoalise.localhost'><{name} xmlns='urn:x'/></iq>"), Some("service-unavailable")),
        ("xml-attr", "<iq type='get' id='xml-attr' xml:foo='2' from='bob@localhost/r' to='quoalise.localhost'><ping xmlns='urn:xmpp:ping' xml:bar='3'/></iq>".to_owned(), None),
        ("reserved", "<iq type='get' id='reserved' from='bob@localhost/r' to='quoalise.localhost' xmlns:xml='urn:not-the-xml-namespace'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(), Some("bad-request")),
        ("xml-alias", "<iq type='get' id='xml-alias' from='bob@localhost/r' to='quoalise.localhost' xmlns:ns1='http://www.w3.org/XML/1998/namespace' ns1:foo='2'><ping xmlns='urn:xmpp:ping'/></iq>".to_owned(), None),
        ("too-large", format!("<iq type='get' id='too-large' from='bob@localhost/r' to='quoalise.localhost'><x xmlns='urn:x'>{}</x></iq>", "y".repeat(600 * 1024)), Some("bad-request")),
    ];
    for (id, text, expected) in &cases {
        // A message and a presence as deep come first: dropped without a word.
        server
            .send(&format!("<message from='bob@localhost/r' to='quoalise.localhost'>{}</message><presence from='bob@localhost/r' to='quoalise.localhost'>{}</presence>", deep(30_000), deep(600)))
            .await;
        server.send(text).await;
        let ids: HashSet<String> = [id.to_string()].into();
        let answer = timeout(Duration::from_secs(10), server.answers(&ids))
            .await
            .unwrap_or_else(|_| panic!("{id} answered"));
        match expected {
            None => assert_eq!(answer[0].attr("type"), Some("result"), "{id}"),
            Some(c) => assert_eq!(stanza_error(&answer[0]).condition, *c, "{id}"),
        }
    }
    let ids: HashSet<String> = ["last".to_owned()].into();
    server.send(&disco("last", "carol@localhost/r")).await;
    timeout(Duration::from_secs(5), server.answers(&ids))
        .await
        .unwrap();
    let metrics = h.metrics.render();
    assert!(
        metrics.contains("quoalise_stanzas_refused_total{reason=\"depth\"} 18"),
        "{metrics}"
    );
    assert!(metrics.contains("quoalise_stanzas_refused_total{reason=\"size\"} 1"));
    // One session all along.
    assert!(
        timeout(Duration::from_millis(300), h.listener.accept())
            .await
            .is_err(),
        "the link reconnected"
    );
    h.shutdown.cancel();
}

/// Queues `count` notifications of `size` bytes while the server does not read, then lets it
/// read after `pause`. Returns the server side and the ids queued.
async fn stalled_burst(h: &Harness, count: i64, size: usize) -> HashSet<i64> {
    let outbound = h.outbound.clone();
    tokio::spawn(async move {
        for id in 1..=count {
            if outbound.send(notification(id, size)).await.is_err() {
                return;
            }
        }
    });
    (1..=count).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_pauses_reading_loses_nothing_and_is_not_torn_down() {
    let mut h = start_link(Duration::from_secs(3), LimitsConfig::default()).await;
    let mut server = ServerSide::accept(&h.listener).await;
    // 2,000 × 4 KiB: far more than the socket buffers hold, so the link's writes block.
    let queued = stalled_burst(&h, 2000, 4096).await;
    // Requests keep coming while the server does not read: the link answers them later.
    let mut ids = HashSet::new();
    for i in 0..50 {
        let id = format!("p{i}");
        server.send(&disco(&id, "carol@localhost/r")).await;
        ids.insert(id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Resume reading: every notification and every answer arrives.
    let mut received = HashSet::new();
    let mut answered = HashSet::new();
    timeout(Duration::from_secs(30), async {
        while received.len() < queued.len() || answered.len() < ids.len() {
            let el = server.stanza().await;
            let id = el.attr("id").unwrap_or_default().to_owned();
            if let Some(n) = id.strip_prefix('q') {
                received.insert(n.parse::<i64>().unwrap());
            } else if ids.contains(&id) {
                answered.insert(id);
            }
        }
    })
    .await
    .expect("everything arrives after the pause");
    assert_eq!(received, queued);
    let mut written = HashSet::new();
    while written.len() < queued.len() {
        written.insert(outbox_id(
            timeout(Duration::from_secs(5), h.written.recv())
                .await
                .unwrap()
                .unwrap(),
        ));
    }
    assert_eq!(written, queued);
    assert!(h.released.try_recv().is_err(), "nothing handed back");
    assert!(h.metrics.render().contains("quoalise_xmpp_stalls_total 0"));
    assert!(
        timeout(Duration::from_millis(300), h.listener.accept())
            .await
            .is_err(),
        "a pause shorter than the stall timeout does not reconnect"
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_reconnects_a_server_that_stopped_reading() {
    let mut h = start_link(Duration::from_secs(2), LimitsConfig::default()).await;
    let server = ServerSide::accept(&h.listener).await;
    let queued = stalled_burst(&h, 2000, 4096).await;
    let started = Instant::now();
    // Health sees the stall before the watchdog acts: unhealthy once a write waited longer
    // than half the stall timeout (what the component uses for /healthz).
    let silence = Duration::from_secs(60);
    let healthy = async {
        while h.progress.verdict(silence, Duration::from_secs(1)).is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(1), healthy)
        .await
        .expect("healthy once the session is up");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let verdict = h.progress.verdict(silence, Duration::from_secs(1));
    assert!(
        matches!(verdict, Err(LinkTrouble::Stalled(_))),
        "{verdict:?}"
    );
    // The server never reads again: within the stall timeout (plus the time to fill the
    // buffers) the link gives up this session and logs in again.
    let mut again = timeout(Duration::from_secs(15), ServerSide::accept(&h.listener))
        .await
        .expect("the watchdog tears the stalled session down and reconnects");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(h.metrics.render().contains("quoalise_xmpp_stalls_total 1"));
    drop(server);
    // Every notification is accounted for: written before the stall, or handed back (the
    // delivery task sends those again), or still to come on the new session.
    let mut seen = HashSet::new();
    let mut drain = |rx: &mut mpsc::UnboundedReceiver<Report>| {
        while let Ok(report) = rx.try_recv() {
            seen.insert(outbox_id(report));
        }
    };
    drain(&mut h.written);
    drain(&mut h.released);
    let mut on_new_session = HashSet::new();
    timeout(Duration::from_secs(30), async {
        while seen.len() + on_new_session.len() < queued.len() {
            let el = again.stanza().await;
            if let Some(n) = el.attr("id").and_then(|id| id.strip_prefix('q')) {
                on_new_session.insert(n.parse::<i64>().unwrap());
            }
            while let Ok(report) = h.released.try_recv() {
                seen.insert(outbox_id(report));
            }
        }
    })
    .await
    .expect("every queued notification is written or released");
    let all: HashSet<i64> = seen.union(&on_new_session).copied().collect();
    assert_eq!(all, queued);
    h.shutdown.cancel();
}
