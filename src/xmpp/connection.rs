//! XEP-0114: Jabber Component Protocol — the link to the XMPP server.
//!
//! `tokio_xmpp::Component` cannot be used as is (DESIGN.md §5): it has no reconnect nor keepalive
//! and ends the session on any stanza xmpp-parsers cannot parse, so any user could disconnect
//! us. This module logs in on tokio-xmpp's `xmlstream` layer and reads raw [`Element`]s; parsing
//! happens in the router, where a failure becomes an error reply instead of a disconnect.
//!
//! One task (the link task) owns the socket: it is the only writer, fed by a bounded channel that
//! outlives sessions, so stanzas queued while the link is down go out after the reconnect.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::config::Secret;
use crate::stanzas::ns;
use crate::xep;
use crate::xmpp::error::raw_iq_error;
use crate::xmpp::router::Router;

type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// Stanzas handled at once; beyond this the reader waits, which pushes back on the server.
const MAX_IN_FLIGHT: usize = 64;
/// Stanzas written between two flushes at most.
const WRITE_BATCH: usize = 64;
/// Time allowed for TCP connect + stream header + handshake.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// First reconnect delay; doubles up to the configured maximum.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// A stanza for the writer. Stanzas from the outbox carry their id so the link can report when
/// they are written (and hand them back when the link drops before writing them).
#[derive(Debug)]
pub struct Outgoing {
    pub stanza: Element,
    pub outbox_id: Option<i64>,
    /// Length of the stanza's text when it was read from text (the outbox): lets the link skip
    /// measuring stanzas that cannot be anywhere near the limit.
    pub text_len: Option<usize>,
}

impl From<Element> for Outgoing {
    fn from(stanza: Element) -> Self {
        Outgoing {
            stanza,
            outbox_id: None,
            text_len: None,
        }
    }
}

impl Outgoing {
    /// True when the stanza surely fits: written back from text it can at most double (every
    /// `<a/>` becoming `<a></a>`), plus namespace declarations.
    fn surely_fits(&self, limit: usize) -> bool {
        self.text_len
            .is_some_and(|len| len.saturating_mul(2).saturating_add(1024) <= limit)
    }
}

/// Where the link reports outbox entries: written to the server, or handed back unwritten.
#[derive(Debug, Clone)]
pub struct OutboxReports {
    pub written: mpsc::UnboundedSender<i64>,
    pub released: mpsc::UnboundedSender<i64>,
}

/// What the link needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub domain: BareJid,
    pub server: String,
    pub secret: Secret,
    pub ping_target: Jid,
    pub ping_interval: Duration,
    pub max_backoff: Duration,
    pub max_stanza_size: usize,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("another component is already connected as this domain (conflict)")]
    Conflict,
    #[error("the server refused the shared secret (not-authorized): check [xmpp] secret")]
    NotAuthorized,
    #[error("the server does not serve this component domain (host-unknown)")]
    HostUnknown,
    #[error("the server closed the stream: {0}")]
    StreamError(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Runs the link until `shutdown`: logs in, serves, reconnects with capped exponential backoff.
///
/// `outbound` is the receiving end of the writer channel; `replies` its sending end, used for
/// answers to inbound stanzas and keepalive pings. `connected` reflects the link state.
pub async fn run(
    config: LinkConfig,
    router: Router,
    mut outbound: mpsc::Receiver<Outgoing>,
    replies: mpsc::Sender<Outgoing>,
    reports: OutboxReports,
    connected: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let attempt = tokio::select! {
            r = tokio::time::timeout(LOGIN_TIMEOUT, login(&config)) => r.unwrap_or(Err(LoginError::Timeout)),
            _ = shutdown.cancelled() => break,
        };
        match attempt {
            Ok(stream) => {
                tracing::info!(domain = %config.domain, server = %config.server, "xmpp session established");
                let started = Instant::now();
                connected.send_replace(true);
                let end = session(
                    &config,
                    stream,
                    &router,
                    &mut outbound,
                    &replies,
                    &reports,
                    &shutdown,
                )
                .await;
                connected.send_replace(false);
                release_queued(&mut outbound, &reports);
                match end {
                    SessionEnd::Shutdown => break,
                    SessionEnd::Lost(reason) => {
                        tracing::warn!(%reason, "xmpp link lost; reconnecting");
                    }
                }
                if started.elapsed() >= STABLE_SESSION {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(error @ LoginError::Conflict) => tracing::error!(
                domain = %config.domain, %error,
                "is a second instance running? will retry"
            ),
            Err(error @ LoginError::NotAuthorized) | Err(error @ LoginError::HostUnknown) => {
                tracing::error!(domain = %config.domain, server = %config.server, %error, "login refused; will retry")
            }
            Err(error) => {
                tracing::warn!(server = %config.server, %error, "cannot connect to the XMPP server; will retry")
            }
        }
        tracing::info!(delay = ?backoff, "reconnecting after delay");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(config.max_backoff.max(MIN_BACKOFF));
    }
    tracing::info!("xmpp link stopped");
}

/// After the link dropped, empties the writer queue: outbox stanzas go back to the delivery task
/// (they are in the store and will be sent again, so a long outage pins nothing in memory);
/// answers to requests are dropped, since their requesters see the disconnect and ask again.
fn release_queued(outbound: &mut mpsc::Receiver<Outgoing>, reports: &OutboxReports) {
    let mut dropped = 0usize;
    while let Ok(out) = outbound.try_recv() {
        match out.outbox_id {
            Some(id) => {
                let _ = reports.released.send(id);
            }
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::info!(dropped, "answers queued before the disconnect were dropped");
    }
}

/// Connects and performs the XEP-0114 handshake.
pub async fn login(config: &LinkConfig) -> Result<Stream, LoginError> {
    let tcp = TcpStream::connect(&config.server).await?;
    tcp.set_nodelay(true)?;
    // Soft timeout after 2 ping intervals of silence, hard after one more: a dead server is
    // noticed within three intervals even if TCP says nothing.
    let timeouts = Timeouts {
        read_timeout: config.ping_interval * 2,
        response_timeout: config.ping_interval,
    };
    let mut pending = initiate_stream(
        BufStream::new(tcp),
        ns::COMPONENT,
        StreamHeader {
            to: Some(Cow::Owned(config.domain.to_string())),
            from: None,
            id: None,
        },
        timeouts,
    )
    .await?;
    let header = pending.take_header();
    let stream_id = header
        .id
        .ok_or_else(|| LoginError::Protocol("stream header without id".into()))?
        .into_owned();
    let mut stream: Stream = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id, config.secret.expose());
    stream.send(&handshake).await?;
    loop {
        match stream.next().await {
            Some(Ok(el)) if el.is("handshake", ns::COMPONENT) => return Ok(stream),
            Some(Ok(el)) if el.is("error", ns::STREAM) => {
                return Err(match stream_error_condition(&el).as_str() {
                    "conflict" => LoginError::Conflict,
                    "not-authorized" => LoginError::NotAuthorized,
                    "host-unknown" => LoginError::HostUnknown,
                    other => LoginError::StreamError(other.to_owned()),
                })
            }
            Some(Ok(el)) => {
                return Err(LoginError::Protocol(format!(
                    "unexpected <{}/> during handshake",
                    el.name()
                )))
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => return Err(LoginError::Protocol(e.to_string())),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(LoginError::Protocol(
                    "stream closed during handshake".into(),
                ))
            }
        }
    }
}

/// The defined condition of a `<stream:error/>` (`conflict`, `not-authorized`, …).
fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.has_ns(ns::XMPP_STREAMS) && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into())
}

/// Serves one established session: reads and dispatches inbound stanzas, writes outbound ones,
/// pings the server.
async fn session(
    config: &LinkConfig,
    mut stream: Stream,
    router: &Router,
    outbound: &mut mpsc::Receiver<Outgoing>,
    replies: &mpsc::Sender<Outgoing>,
    reports: &OutboxReports,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate; the handshake just proved liveness
    let mut ping_seq: u64 = 0;
    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break SessionEnd::Shutdown,
            inbound = stream.next() => match inbound {
                Some(Ok(el)) => {
                    if el.is("error", ns::STREAM) {
                        break SessionEnd::Lost(format!("stream error from server: {}", stream_error_condition(&el)));
                    }
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break SessionEnd::Lost("handler pool closed".into());
                    };
                    let router = router.clone();
                    let replies = replies.clone();
                    tokio::spawn(async move {
                        for reply in router.handle(el).await {
                            if replies.send(reply.into()).await.is_err() {
                                break;
                            }
                        }
                        drop(permit);
                    });
                }
                Some(Err(ReadError::SoftTimeout)) => {
                    ping_seq += 1;
                    if let Err(e) = send_ping(config, &mut stream, ping_seq).await {
                        break SessionEnd::Lost(format!("write failed: {e}"));
                    }
                }
                Some(Err(ReadError::ParseError(e))) => {
                    // Not well-formed for xso (e.g. bad attribute value); the stream survives.
                    tracing::info!(error = %e, "dropping unparsable element");
                }
                Some(Err(ReadError::HardError(e))) => break SessionEnd::Lost(describe_read_error(&e)),
                Some(Err(ReadError::StreamFooterReceived)) | None => break SessionEnd::Lost("stream closed by the server".into()),
            },
            Some(out) = outbound.recv() => {
                // Write what is queued in one go and flush once: one syscall per stanza cost
                // more than the stanza (and costs the server as much).
                let mut ids: Vec<i64> = out.outbox_id.into_iter().collect();
                let mut result = write(config, &mut stream, out).await;
                let mut written = 1;
                while result.is_ok() && written < WRITE_BATCH {
                    let Ok(next) = outbound.try_recv() else { break };
                    ids.extend(next.outbox_id);
                    result = write(config, &mut stream, next).await;
                    written += 1;
                }
                if result.is_ok() {
                    result = SinkExt::<&Element>::flush(&mut stream).await;
                }
                let report = if result.is_ok() { &reports.written } else { &reports.released };
                for id in ids {
                    let _ = report.send(id);
                }
                if let Err(e) = result {
                    break SessionEnd::Lost(format!("write failed: {e}"));
                }
            }
            _ = ping.tick() => {
                ping_seq += 1;
                if let Err(e) = send_ping(config, &mut stream, ping_seq).await {
                    break SessionEnd::Lost(format!("write failed: {e}"));
                }
            }
        }
    };
    if matches!(end, SessionEnd::Shutdown) {
        // Give queued stanzas a moment, then close the stream properly; outbox entries count
        // as written only once the close (which flushes) succeeded.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut ids = Vec::new();
        while let Ok(out) = outbound.try_recv() {
            let id = out.outbox_id;
            if Instant::now() > deadline || write(config, &mut stream, out).await.is_err() {
                break;
            }
            ids.extend(id);
        }
        let closed = tokio::time::timeout(
            Duration::from_secs(2),
            SinkExt::<&Element>::close(&mut stream),
        )
        .await;
        let report = if matches!(closed, Ok(Ok(()))) {
            &reports.written
        } else {
            &reports.released
        };
        for id in ids {
            let _ = report.send(id);
        }
    }
    end
}

/// A read error as an admin understands it: a server that stops mid-stream shows up as an
/// "invalid eof" parse error, which is just the connection closing.
fn describe_read_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
            "the server closed the connection".into()
        }
        TimedOut => "the server stopped answering (keepalive timeout)".into(),
        _ if e.to_string().contains("eof") => "the server closed the connection".into(),
        _ => format!("read failed: {e}"),
    }
}

async fn send_ping(config: &LinkConfig, stream: &mut Stream, seq: u64) -> std::io::Result<()> {
    let ping = xep::ping::request(
        config.domain.clone().into(),
        config.ping_target.clone(),
        format!("keepalive-{seq}"),
    );
    stream.send(&ping).await
}

/// Queues one stanza in the stream's buffer (the caller flushes) unless it exceeds the server's limit, in which case sending it would make
/// the server close the stream: it is dropped with an error log (and an iq gets an error reply).
async fn write(config: &LinkConfig, stream: &mut Stream, out: Outgoing) -> std::io::Result<()> {
    if out.surely_fits(config.max_stanza_size) {
        return stream.feed(&out.stanza).await;
    }
    let el = out.stanza;
    let size = wire_size(&el);
    if size > config.max_stanza_size {
        tracing::error!(
            size,
            limit = config.max_stanza_size,
            name = el.name(),
            to = el.attr("to").unwrap_or("?"),
            "not sending a stanza larger than the server accepts"
        );
        if let Some(reply) = oversize_reply(&el) {
            stream.feed(&reply).await?;
        }
        return Ok(());
    }
    stream.feed(&el).await
}

/// The size of a stanza as the stream writes it. xso's encoder (what tokio-xmpp writes with)
/// never uses the short `<a/>` form, so minidom's own serialisation would undercount by a few
/// bytes per empty element: enough to push a history page past Prosody's limit.
pub fn wire_size(el: &Element) -> usize {
    xso::to_vec(el)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX)
}

/// Replaces an oversized iq result by a `resource-constraint` error to the same requester.
fn oversize_reply(el: &Element) -> Option<Element> {
    if !el.is("iq", ns::COMPONENT) || el.attr("type") != Some("result") {
        return None;
    }
    let error = StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::ResourceConstraint,
        "en",
        "The answer is larger than the XMPP server accepts; ask for a smaller range or page",
    );
    raw_iq_error(el, error, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_conditions() {
        let el: Element = "<error xmlns='http://etherx.jabber.org/streams'><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Component already connected</text><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>".parse().unwrap();
        assert_eq!(stream_error_condition(&el), "conflict");
        let el: Element = "<error xmlns='http://etherx.jabber.org/streams'/>"
            .parse()
            .unwrap();
        assert_eq!(stream_error_condition(&el), "undefined-condition");
    }

    #[test]
    fn only_small_texts_skip_measuring() {
        let el: Element = "<message xmlns='jabber:component:accept'/>"
            .parse()
            .unwrap();
        let out = |text_len| Outgoing {
            stanza: el.clone(),
            outbox_id: Some(1),
            text_len,
        };
        assert!(out(Some(1000)).surely_fits(512 * 1024));
        assert!(!out(Some(300 * 1024)).surely_fits(512 * 1024));
        assert!(!out(None).surely_fits(512 * 1024));
    }

    #[test]
    fn read_errors_are_described_for_admins() {
        use std::io::{Error, ErrorKind};
        let eof = Error::new(ErrorKind::InvalidData, "invalid eof in text node");
        assert_eq!(
            describe_read_error(&eof),
            "the server closed the connection"
        );
        let reset = Error::from(ErrorKind::ConnectionReset);
        assert_eq!(
            describe_read_error(&reset),
            "the server closed the connection"
        );
        let timeout = Error::from(ErrorKind::TimedOut);
        assert!(describe_read_error(&timeout).contains("keepalive"));
    }

    #[test]
    fn size_counts_empty_elements_as_written_on_the_wire() {
        let el: Element =
            "<iq xmlns='jabber:component:accept' type='result' id='a'><x xmlns='y'/></iq>"
                .parse()
                .unwrap();
        let wire = String::from_utf8(xso::to_vec(&el).unwrap()).unwrap();
        assert!(wire.contains("></x>"), "{wire}");
        assert_eq!(wire_size(&el), wire.len());
        assert!(wire_size(&el) > String::from(&el).len());
    }

    #[test]
    fn oversized_results_become_errors_to_the_requester() {
        let el: Element = "<iq xmlns='jabber:component:accept' type='result' id='q1' from='quoalise.localhost' to='alice@localhost/x'><big/></iq>".parse().unwrap();
        let reply = oversize_reply(&el).unwrap();
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("q1"));
        assert_eq!(reply.attr("to"), Some("alice@localhost/x"));
        let msg: Element = "<message xmlns='jabber:component:accept' to='a@b'/>"
            .parse()
            .unwrap();
        assert!(oversize_reply(&msg).is_none());
    }
}
