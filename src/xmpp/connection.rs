//! XEP-0114: Jabber Component Protocol — the link to the XMPP server.
//!
//! The link reads bytes, not trees: [`framing`] splits the server's stream into stanzas and
//! refuses, before any tree exists, those deeper than `[xmpp] max_depth` or larger than
//! `max_stanza_size`; [`parse`] builds the tree of each accepted stanza alone. Whatever one
//! stanza holds, only that stanza fails: an iq gets an error, a message or presence is dropped,
//! the stream goes on. Any user of the server can send us anything, so no input may end it.
//!
//! Invariant: **reading, dispatching and writing progress independently, and the writer never
//! waits for anything but its socket.** A session runs two loops side by side:
//! - the reader reads, frames and dispatches. A request goes to a handler task only with a free
//!   slot of the handler pool (`MAX_IN_FLIGHT`); when all slots are taken the reader stops
//!   **reading**, which pushes back on the server through TCP. Per-requester limits
//!   ([`limits`]) answer an over-limit request at once with an error, read from its opening tag
//!   and formatted without a tree, so one flooding account fills its own allowance and not the
//!   pool. Those errors wait in their own queue, which the writer serves only when no other
//!   answer waits: a flood's errors never queue in front of another user's answers.
//! - the writer drains the outbound channel (answers, notifications) and sends keepalive pings.
//!   Handlers hold their slot until their replies are in that channel, which only the writer
//!   empties, and the writer never waits on the reader or on a handler: the loop that once
//!   wedged for good (inbound first, a permit awaited inside the select, replies stuck behind
//!   it) cannot form.
//!
//! A watchdog on every write tears the session down when there was something to write and
//! nothing could be written for `[xmpp] stall_timeout` (the server stopped reading us); the
//! link then reconnects. A read timeout of three ping intervals notices a dead server.
//!
//! One writer channel outlives sessions, so stanzas queued while the link is down go out after
//! the reconnect; outbox entries are reported written only once flushed to the socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::config::Secret;
use crate::health::LinkProgress;
use crate::metrics::Metrics;
use crate::request::error::{raw_iq_error, RequestError};
use crate::stanzas::ns;
use crate::stanzas::outgoing::{Outgoing, Payload, Report};
use crate::xep;
use crate::xmpp::framing::{Frame, Framer, Refusal};
use crate::xmpp::limits::{Cost, InFlight, RequestLimits};
use crate::xmpp::parse::{self, Addressing};
use crate::xmpp::router::Router;

/// Requests handled at once, all requesters together; beyond this the reader stops reading.
const MAX_IN_FLIGHT: usize = 64;
/// Stanzas written between two flushes at most.
const WRITE_BATCH: usize = 64;
/// Bytes gathered before a write, at most (a single larger stanza is written alone).
const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes read from the socket at once.
const READ_BUFFER: usize = 16 * 1024;
/// Time allowed for TCP connect + stream header + handshake.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// First reconnect delay; doubles up to the configured maximum.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// How often a warm standby tries again while another instance holds the domain (`conflict`,
/// Prosody's answer to a second connection): steady, not backing off, so that it takes over
/// within this long of the active instance's death.
pub(crate) const STANDBY_RETRY: Duration = Duration::from_secs(2);
/// How often the per-requester rate state forgets requesters that went quiet.
const FORGET_IDLE: Duration = Duration::from_secs(60);
/// Handler slots kept, under pressure, for requesters with little in flight.
const RESERVED_SLOTS: usize = 16;
/// Limit errors waiting for the writer at most; beyond, the reader waits (stops reading).
const REFUSALS: usize = 1024;
/// Limit errors written together at most, between two looks at the other answers.
const REFUSAL_BATCH: usize = 16;
/// Requesters whose rate state may be remembered before it is pruned early.
const MAX_TRACKED_REQUESTERS: usize = 100_000;
/// Time given to queued stanzas at shutdown.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);

/// Where the link reports outbox entries: written to the server, or handed back unwritten.
#[derive(Debug, Clone)]
pub struct OutboxReports {
    pub written: mpsc::UnboundedSender<Report>,
    pub released: mpsc::UnboundedSender<Report>,
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
    /// Deepest inbound stanza read; deeper ones are refused unread.
    pub max_depth: usize,
    /// Something to write and nothing written for this long: the session is torn down.
    pub stall_timeout: Duration,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
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
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// The link: everything a session needs besides its socket and channels.
pub struct Link {
    pub config: LinkConfig,
    pub router: Router,
    pub limits: Arc<RequestLimits>,
    pub metrics: Metrics,
    pub reports: OutboxReports,
    /// Reflects the link state.
    pub connected: watch::Sender<bool>,
    /// Where the link says it made progress, for health checks.
    pub progress: Arc<LinkProgress>,
    /// Limit errors, formatted without building trees.
    pub errors: ErrorReplies,
}

/// Where the reader's answers go: handlers' answers share the writer channel with the outbox;
/// limit errors have their own queue, which the writer serves only when nothing else waits.
struct Answers {
    replies: mpsc::Sender<Outgoing>,
    refusals: mpsc::Sender<Vec<u8>>,
}

/// A logged-in stream: the socket, the framer that read the handshake, and any stanza the
/// server sent right behind it.
struct Established {
    tcp: TcpStream,
    framer: Framer,
    frames: Vec<Frame>,
}

impl Link {
    /// Runs the link until `shutdown`: logs in, serves, reconnects with capped exponential
    /// backoff. `outbound` is the receiving end of the writer channel; `replies` its sending
    /// end, used for answers to inbound stanzas.
    pub async fn run(
        self,
        mut outbound: mpsc::Receiver<Outgoing>,
        replies: mpsc::Sender<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let config = &self.config;
        let mut backoff = MIN_BACKOFF;
        // Set while another instance holds the domain: this one is a warm standby.
        let mut standing_by = false;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(LOGIN_TIMEOUT, login(config)) => r.unwrap_or(Err(LoginError::Timeout)),
                _ = shutdown.cancelled() => break,
            };
            match attempt {
                Ok(established) => {
                    if std::mem::take(&mut standing_by) {
                        tracing::info!(domain = %config.domain, "the domain is free: this standby instance takes over");
                    }
                    tracing::info!(domain = %config.domain, server = %config.server, "xmpp session established");
                    let started = Instant::now();
                    self.connected.send_replace(true);
                    self.progress.session_started();
                    let end = self
                        .session(established, &mut outbound, &replies, &shutdown)
                        .await;
                    self.progress.session_ended();
                    self.connected.send_replace(false);
                    release_queued(&mut outbound, &self.reports);
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
                Err(LoginError::Conflict) => {
                    // Expected of a warm standby: said once, then quiet.
                    if !standing_by {
                        tracing::info!(
                            domain = %config.domain, retry = ?STANDBY_RETRY,
                            "another instance is connected as this domain (conflict); standing by to take over"
                        );
                        standing_by = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(STANDBY_RETRY) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
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

    /// Serves one established session until it is lost or `shutdown`.
    async fn session(
        &self,
        established: Established,
        outbound: &mut mpsc::Receiver<Outgoing>,
        replies: &mpsc::Sender<Outgoing>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let Established {
            tcp,
            framer,
            frames,
        } = established;
        let (read_half, write_half) = tcp.into_split();
        // Outbox ids taken from the channel and not yet reported: whatever ends the session,
        // they are reported released below, so none is forgotten.
        let mut unreported = Vec::new();
        let (refusals_tx, mut refusals) = mpsc::channel(REFUSALS);
        let answers = Answers {
            replies: replies.clone(),
            refusals: refusals_tx,
        };
        let end = {
            let reader = self.read_loop(read_half, framer, frames, &answers);
            let writer = self.write_loop(
                write_half,
                outbound,
                &mut refusals,
                &mut unreported,
                shutdown,
            );
            tokio::pin!(reader, writer);
            tokio::select! {
                end = &mut writer => end,
                end = &mut reader => end,
            }
        };
        for id in unreported {
            let _ = self.reports.released.send(id);
        }
        end
    }

    /// Reads, frames and dispatches until the stream ends. Waits only for the socket and for a
    /// free handler slot (never for the writer).
    async fn read_loop(
        &self,
        mut socket: OwnedReadHalf,
        mut framer: Framer,
        mut frames: Vec<Frame>,
        answers: &Answers,
    ) -> SessionEnd {
        let pool = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut buf = vec![0u8; READ_BUFFER];
        let mut forgot = Instant::now();
        // Pings go out every interval and are answered: three intervals of silence mean the
        // server is gone even if TCP says nothing.
        let dead_after = self.config.ping_interval * 3;
        loop {
            for frame in frames.drain(..) {
                if let Some(end) = self.dispatch(frame, &pool, answers).await {
                    return end;
                }
            }
            // Many requesters (accounts of a hostile federated server, say) would grow the rate
            // state: it is pruned early past a bound.
            let since = forgot.elapsed();
            if since >= FORGET_IDLE
                || (since >= Duration::from_secs(1)
                    && self.limits.tracked() > MAX_TRACKED_REQUESTERS)
            {
                self.limits.forget_idle();
                forgot = Instant::now();
            }
            let n = match tokio::time::timeout(dead_after, socket.read(&mut buf)).await {
                Err(_) => {
                    return SessionEnd::Lost(
                        "the server stopped answering (keepalive timeout)".into(),
                    )
                }
                Ok(Err(e)) => return SessionEnd::Lost(describe_read_error(&e)),
                Ok(Ok(0)) => return SessionEnd::Lost("the server closed the connection".into()),
                Ok(Ok(n)) => n,
            };
            self.progress.read();
            if let Err(e) = framer.push(buf.get(..n).unwrap_or_default(), &mut frames) {
                return SessionEnd::Lost(e.to_string());
            }
        }
    }

    /// Acts on one frame; returns how the session ends when it does.
    async fn dispatch(
        &self,
        frame: Frame,
        pool: &Arc<Semaphore>,
        answers: &Answers,
    ) -> Option<SessionEnd> {
        match frame {
            Frame::Stanza(bytes) => {
                let addressing = parse::opening_tag(&bytes).and_then(parse::addressing);
                match addressing {
                    Some(a)
                        if a.name == "iq" && matches!(a.type_.as_deref(), Some("get" | "set")) =>
                    {
                        self.request(&bytes, a, pool, answers).await;
                        return None;
                    }
                    _ => {}
                }
                return self.other_stanza(&bytes, pool, answers).await;
            }
            Frame::Refused { head, reason } => {
                self.metrics.stanza_refused(reason == Refusal::TooDeep);
                let addressing = head.as_deref().and_then(parse::addressing);
                tracing::info!(
                    from = addressing
                        .as_ref()
                        .and_then(|a| a.from.as_deref())
                        .unwrap_or("?"),
                    reason = reason.describe(),
                    "stanza refused unread"
                );
                let limit = match reason {
                    Refusal::TooDeep => format!("{} levels", self.config.max_depth),
                    Refusal::TooLarge => format!("{} bytes", self.config.max_stanza_size),
                };
                let error = RequestError::StanzaRefused(format!(
                    "The stanza is {} (at most {limit}); it was not read",
                    reason.describe()
                ));
                self.answer_unread(addressing, error, answers).await;
            }
            Frame::Footer => return Some(SessionEnd::Lost("stream closed by the server".into())),
            Frame::Header(_) => tracing::debug!("ignoring a second stream header"),
        }
        None
    }

    /// An iq get or set: its requester's limits are checked on the opening tag alone, so that a
    /// flood is refused at the cost of a scan and a formatted reply, without building a tree
    /// (another requester's request queued behind the flood waits for that much only). Within
    /// the limits, the stanza is parsed and handed to a handler task.
    async fn request(
        &self,
        bytes: &[u8],
        addressing: Addressing,
        pool: &Arc<Semaphore>,
        answers: &Answers,
    ) {
        let Some(requester) = addressing
            .from
            .as_deref()
            .and_then(|f| f.parse::<Jid>().ok())
            .map(|j| j.to_bare())
        else {
            tracing::info!(
                id = addressing.id.as_deref().unwrap_or("?"),
                "dropping a request without a valid from"
            );
            return;
        };
        let hint = cost_hint(bytes);
        let slot = match self.limits.admit(&requester, hint) {
            Ok(slot) => slot,
            Err(error) => return self.refuse(&requester, &addressing, error, answers).await,
        };
        // Under pressure the last handler slots are kept for requesters with little in flight:
        // one who already has many requests being handled gets an error instead of a wait, so
        // that a few flooding accounts cannot make the reader (and everyone behind them) wait.
        if pool.available_permits() < RESERVED_SLOTS && self.limits.holds_many(&requester) {
            drop(slot);
            let busy = RequestError::ResourceConstraint(
                "The service is busy and you already have requests being handled; wait for their answers".into(),
            );
            return self.refuse(&requester, &addressing, busy, answers).await;
        }
        let el = match parse::stanza(bytes) {
            Ok(el) => el,
            Err(reason) => {
                tracing::info!(%requester, %reason, "unreadable stanza");
                let error = RequestError::bad_request(format!(
                    "The stanza is not namespace-well-formed XML: {reason}"
                ));
                self.answer_unread(Some(addressing), error, answers).await;
                return;
            }
        };
        // The hint read the bytes; the tree says for sure. A history request that slipped
        // through as light pays the rest of its cost now.
        if hint == Cost::Light && cost(&el) == Cost::Heavy {
            if let Err(error) = self.limits.charge_heavy(&requester) {
                drop(slot);
                return self.refuse(&requester, &addressing, error, answers).await;
            }
        }
        self.hand_over(el, slot, pool, answers).await;
    }

    /// Runs the router on `el` in a task of its own, holding a handler slot and its
    /// requester's slot until its replies are in the writer's channel. All handler slots
    /// taken: the reader waits here, so it stops reading (TCP pushes back on the server); the
    /// writer goes on meanwhile, so the handlers finish.
    async fn hand_over(
        &self,
        el: Element,
        slot: InFlight,
        pool: &Arc<Semaphore>,
        answers: &Answers,
    ) {
        let Ok(permit) = pool.clone().acquire_owned().await else {
            return;
        };
        let router = self.router.clone();
        let replies = answers.replies.clone();
        tokio::spawn(async move {
            for reply in router.handle(el).await {
                if replies.send(reply.into()).await.is_err() {
                    break;
                }
            }
            drop(permit);
            drop(slot);
        });
    }

    /// Answers a request over its requester's limits with the limit's error, formatted from the
    /// opening tag's addressing.
    async fn refuse(
        &self,
        requester: &BareJid,
        addressing: &Addressing,
        error: RequestError,
        answers: &Answers,
    ) {
        self.metrics
            .request_limited(matches!(error, RequestError::ResourceConstraint(_)));
        tracing::debug!(%requester, %error, "request over its requester's limit");
        if let Some(bytes) = self.errors.reply(addressing, &error) {
            let _ = answers.refusals.send(bytes).await;
        }
    }

    /// Anything but a request: a stream error ends the session; a bounce goes to a handler
    /// (silently dropped over its sender's rate: never answer an error); messages and presences
    /// are only checked; results answer our pings.
    async fn other_stanza(
        &self,
        bytes: &[u8],
        pool: &Arc<Semaphore>,
        answers: &Answers,
    ) -> Option<SessionEnd> {
        let el = match parse::stanza(bytes) {
            Ok(el) => el,
            Err(reason) => {
                let addressing = parse::opening_tag(bytes).and_then(parse::addressing);
                tracing::info!(
                    from = addressing.as_ref().and_then(|a| a.from.as_deref()).unwrap_or("?"),
                    %reason,
                    "unreadable stanza"
                );
                return None;
            }
        };
        if el.is("error", ns::STREAM) {
            return Some(SessionEnd::Lost(format!(
                "stream error from server: {}",
                stream_error_condition(&el)
            )));
        }
        if !el.has_ns(ns::COMPONENT) {
            tracing::debug!(name = el.name(), "ignoring non-stanza element");
            return None;
        }
        match (el.name(), el.attr("type")) {
            ("message", Some("error")) => {
                let requester = el
                    .attr("from")
                    .and_then(|f| f.parse::<Jid>().ok())
                    .map(|j| j.to_bare())?;
                let slot = self.limits.admit(&requester, Cost::Light).ok()?;
                self.hand_over(el, slot, pool, answers).await;
            }
            // Iq results and errors answer our pings: nothing to do.
            ("iq", _) => {}
            // The router only logs the malformed ones, which is cheap enough to do here.
            _ => {
                self.router.handle(el).await;
            }
        }
        None
    }

    /// Answers a stanza that could not be read: an error to a request, nothing to the rest.
    async fn answer_unread(
        &self,
        addressing: Option<Addressing>,
        error: RequestError,
        answers: &Answers,
    ) {
        if let Some(reply) = addressing.and_then(|a| unread_reply(&a, error)) {
            let _ = answers.replies.send(reply.into()).await;
        }
    }

    /// Writes what the channel brings and pings, until shutdown or a write fails or stalls.
    async fn write_loop(
        &self,
        mut socket: OwnedWriteHalf,
        outbound: &mut mpsc::Receiver<Outgoing>,
        refusals: &mut mpsc::Receiver<Vec<u8>>,
        unreported: &mut Vec<Report>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate; the handshake just proved liveness
        let mut ping_seq: u64 = 0;
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    return self.close(socket, outbound, unreported, buf).await;
                }
                out = outbound.recv() => {
                    let Some(out) = out else {
                        return SessionEnd::Lost("the writer channel closed".into());
                    };
                    // Gather what is queued and write it in one go: one syscall per stanza
                    // cost more than the stanza (and costs the server as much).
                    self.encode(out, &mut buf, unreported);
                    let mut gathered = 1;
                    while gathered < WRITE_BATCH && buf.len() < WRITE_BUFFER {
                        let Ok(next) = outbound.try_recv() else { break };
                        self.encode(next, &mut buf, unreported);
                        gathered += 1;
                    }
                }
                // Refusals only when nothing else waits, a few at a time: what one flooding
                // requester gets back never queues in front of other requesters' answers.
                Some(bytes) = refusals.recv() => {
                    buf.extend(bytes);
                    for _ in 1..REFUSAL_BATCH {
                        let Ok(next) = refusals.try_recv() else { break };
                        buf.extend(next);
                    }
                }
                _ = ping.tick() => {
                    ping_seq += 1;
                    let ping = xep::ping::request(
                        self.config.domain.clone().into(),
                        self.config.ping_target.clone(),
                        format!("keepalive-{ping_seq}"),
                    );
                    buf.extend(encode(&ping));
                }
            }
            if let Err(end) = self.write_watched(&mut socket, &buf).await {
                return end;
            }
            buf.clear();
            for id in unreported.drain(..) {
                let _ = self.reports.written.send(id);
            }
        }
    }

    /// Writes `bytes` whole; fails when the socket fails, or when it accepted nothing for the
    /// stall timeout (the watchdog).
    async fn write_watched(
        &self,
        socket: &mut OwnedWriteHalf,
        mut bytes: &[u8],
    ) -> Result<(), SessionEnd> {
        let stall = self.config.stall_timeout;
        self.progress.write_started();
        while !bytes.is_empty() {
            match tokio::time::timeout(stall, socket.write(bytes)).await {
                Err(_) => {
                    self.metrics.link_stalled();
                    tracing::error!(
                        pending = bytes.len(),
                        stall_timeout = ?stall,
                        "the server has not read anything from us for the stall timeout; tearing the session down"
                    );
                    return Err(SessionEnd::Lost(format!(
                        "write stalled for {stall:?} (the server stopped reading)"
                    )));
                }
                Ok(Err(e)) => return Err(SessionEnd::Lost(format!("write failed: {e}"))),
                Ok(Ok(0)) => {
                    return Err(SessionEnd::Lost("write failed: connection closed".into()))
                }
                Ok(Ok(n)) => bytes = bytes.get(n..).unwrap_or_default(),
            }
        }
        self.progress.write_done();
        Ok(())
    }

    /// Appends one stanza's wire bytes to `buf`, unless it exceeds the server's limit: sending
    /// it would make the server close the stream, so it is dropped with an error log (and an iq
    /// result is replaced by an error to its requester).
    fn encode(&self, out: Outgoing, buf: &mut Vec<u8>, unreported: &mut Vec<Report>) {
        unreported.extend(out.report);
        if out.payload.append_wire(buf) {
            return;
        }
        let Payload::Tree(el) = out.payload else {
            return;
        };
        let bytes = encode(&el);
        if bytes.len() <= self.config.max_stanza_size {
            buf.extend(bytes);
            return;
        }
        tracing::error!(
            size = bytes.len(),
            limit = self.config.max_stanza_size,
            name = el.name(),
            to = el.attr("to").unwrap_or("?"),
            "not sending a stanza larger than the server accepts"
        );
        if let Some(reply) = oversize_reply(&el) {
            buf.extend(encode(&reply));
        }
    }

    /// Shutdown: gives queued stanzas a moment, then closes the stream properly. Outbox entries
    /// count as written only once the closing write succeeded.
    async fn close(
        &self,
        mut socket: OwnedWriteHalf,
        outbound: &mut mpsc::Receiver<Outgoing>,
        unreported: &mut Vec<Report>,
        mut buf: Vec<u8>,
    ) -> SessionEnd {
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        while Instant::now() < deadline {
            let Ok(out) = outbound.try_recv() else { break };
            self.encode(out, &mut buf, unreported);
        }
        buf.extend_from_slice(b"</stream:stream>");
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            socket.write_all(&buf).await?;
            socket.shutdown().await
        })
        .await;
        let report = if matches!(closed, Ok(Ok(()))) {
            &self.reports.written
        } else {
            &self.reports.released
        };
        for id in unreported.drain(..) {
            let _ = report.send(id);
        }
        SessionEnd::Shutdown
    }
}

/// What a request probably costs, from its bytes: whether it names the ad-hoc commands or the
/// PubSub namespace with an `items` child. [`cost`] on the tree has the last word.
fn cost_hint(bytes: &[u8]) -> Cost {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(ns::COMMANDS.as_bytes()) || (has(ns::PUBSUB.as_bytes()) && has(b"items")) {
        Cost::Heavy
    } else {
        Cost::Light
    }
}

/// What a request costs against its requester's rate: reading history costs more.
fn cost(el: &Element) -> Cost {
    let Some(payload) = el.children().next() else {
        return Cost::Light;
    };
    let reads_history = payload.is("command", ns::COMMANDS)
        || (payload.is("pubsub", ns::PUBSUB) && payload.has_child("items", ns::PUBSUB));
    if reads_history {
        Cost::Heavy
    } else {
        Cost::Light
    }
}

/// Error replies formatted without a tree: the `<error/>` element of each limit error is
/// encoded once and kept (a handful of texts), the addressing is escaped around it.
#[derive(Default)]
pub struct ErrorReplies {
    encoded: std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<u8>>>>,
}

impl ErrorReplies {
    /// The `<iq type='error'/>` answering `addressing` with `error`; `None` without an id or a
    /// valid sender.
    fn reply(&self, addressing: &Addressing, error: &RequestError) -> Option<Vec<u8>> {
        let id = addressing.id.as_deref()?;
        let to = addressing
            .from
            .as_deref()
            .filter(|f| f.parse::<Jid>().is_ok())?;
        let from = addressing
            .to
            .as_deref()
            .filter(|t| t.parse::<Jid>().is_ok());
        let key = error.to_string();
        let body = {
            let mut cache = self
                .encoded
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if cache.len() > 64 {
                cache.clear();
            }
            cache
                .entry(key)
                .or_insert_with(|| Arc::new(encode(&Element::from(error.to_stanza_error()))))
                .clone()
        };
        let escape =
            |v: &str| String::from_utf8_lossy(&minidom::element::escape(v.as_bytes())).into_owned();
        let mut out = Vec::with_capacity(body.len() + 160);
        out.extend_from_slice(b"<iq xmlns='jabber:component:accept' type='error' id='");
        out.extend_from_slice(escape(id).as_bytes());
        if let Some(from) = from {
            out.extend_from_slice(b"' from='");
            out.extend_from_slice(escape(from).as_bytes());
        }
        out.extend_from_slice(b"' to='");
        out.extend_from_slice(escape(to).as_bytes());
        out.extend_from_slice(b"'>");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"</iq>");
        Some(out)
    }
}

/// The error answering an unread request, addressed from its opening tag; `None` for anything
/// but an iq get or set with an id (never answer a result or an error: that could loop).
fn unread_reply(addressing: &Addressing, error: RequestError) -> Option<Element> {
    if addressing.name != "iq" || !matches!(addressing.type_.as_deref(), Some("get" | "set")) {
        return None;
    }
    let jid = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<Jid>().ok());
    Some(
        Iq::Error {
            from: jid(&addressing.to),
            to: Some(jid(&addressing.from)?),
            id: addressing.id.clone()?,
            error: error.to_stanza_error(),
            payload: None,
        }
        .into(),
    )
}

/// After the link dropped, empties the writer queue: outbox stanzas go back to the delivery task
/// (they are in the store and will be sent again, so a long outage pins nothing in memory);
/// answers to requests are dropped, since their requesters see the disconnect and ask again.
fn release_queued(outbound: &mut mpsc::Receiver<Outgoing>, reports: &OutboxReports) {
    let mut dropped = 0usize;
    while let Ok(out) = outbound.try_recv() {
        match out.report {
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

/// Reads frames until one comes, or the stream ends.
async fn next_frame(
    tcp: &mut TcpStream,
    framer: &mut Framer,
    frames: &mut Vec<Frame>,
) -> Result<Frame, LoginError> {
    let mut buf = vec![0u8; READ_BUFFER];
    while frames.is_empty() {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(LoginError::Protocol(
                "stream closed during handshake".into(),
            ));
        }
        framer
            .push(buf.get(..n).unwrap_or_default(), frames)
            .map_err(|e| LoginError::Protocol(e.to_string()))?;
    }
    Ok(frames.remove(0))
}

/// Connects and performs the XEP-0114 handshake.
async fn login(config: &LinkConfig) -> Result<Established, LoginError> {
    let mut tcp = TcpStream::connect(&config.server).await?;
    tcp.set_nodelay(true)?;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
        ns::COMPONENT,
        ns::STREAM,
        String::from_utf8_lossy(&minidom::element::escape(
            config.domain.to_string().as_bytes()
        )),
    );
    tcp.write_all(header.as_bytes()).await?;
    let mut framer = Framer::new(config.max_depth, config.max_stanza_size);
    let mut frames = Vec::new();
    let stream_id = match next_frame(&mut tcp, &mut framer, &mut frames).await? {
        Frame::Header(head) => parse::addressing(&head)
            .and_then(|a| a.id)
            .ok_or_else(|| LoginError::Protocol("stream header without id".into()))?,
        Frame::Stanza(bytes) => return Err(stream_refusal(&bytes)),
        _ => return Err(LoginError::Protocol("no stream header".into())),
    };
    let handshake = Handshake::from_stream_id_and_password(stream_id, config.secret.expose());
    tcp.write_all(&encode(&handshake.into())).await?;
    loop {
        match next_frame(&mut tcp, &mut framer, &mut frames).await? {
            Frame::Stanza(bytes) => {
                let el = parse::stanza(&bytes).map_err(LoginError::Protocol)?;
                if el.is("handshake", ns::COMPONENT) {
                    return Ok(Established {
                        tcp,
                        framer,
                        frames,
                    });
                }
                if el.is("error", ns::STREAM) {
                    return Err(stream_refusal(&bytes));
                }
                return Err(LoginError::Protocol(format!(
                    "unexpected <{}/> during handshake",
                    el.name()
                )));
            }
            Frame::Footer => {
                return Err(LoginError::Protocol(
                    "stream closed during handshake".into(),
                ))
            }
            _ => continue,
        }
    }
}

/// The login error a `<stream:error/>` stands for.
fn stream_refusal(bytes: &[u8]) -> LoginError {
    match parse::stanza(bytes) {
        Ok(el) if el.is("error", ns::STREAM) => match stream_error_condition(&el).as_str() {
            "conflict" => LoginError::Conflict,
            "not-authorized" => LoginError::NotAuthorized,
            "host-unknown" => LoginError::HostUnknown,
            other => LoginError::StreamError(other.to_owned()),
        },
        Ok(el) => LoginError::Protocol(format!("unexpected <{}/> during handshake", el.name())),
        Err(e) => LoginError::Protocol(e),
    }
}

/// The defined condition of a `<stream:error/>` (`conflict`, `not-authorized`, …).
fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.has_ns(ns::XMPP_STREAMS) && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into())
}

/// A read error as an admin understands it.
fn describe_read_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
            "the server closed the connection".into()
        }
        TimedOut => "the server stopped answering (keepalive timeout)".into(),
        _ => format!("read failed: {e}"),
    }
}

/// A stanza's bytes as written on the wire (xso's encoder, as the size accounting of history
/// pages assumes: it never uses the short `<a/>` form).
fn encode(el: &Element) -> Vec<u8> {
    match xso::to_vec(el) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, name = el.name(), "cannot encode a stanza; dropping it");
            Vec::new()
        }
    }
}

/// The size of a stanza as the stream writes it. xso's encoder never uses the short `<a/>`
/// form, so minidom's own serialisation would undercount by a few bytes per empty element:
/// enough to push a history page past Prosody's limit.
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
    fn read_errors_are_described_for_admins() {
        use std::io::{Error, ErrorKind};
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
