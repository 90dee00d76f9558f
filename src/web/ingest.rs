//! `POST /ingest/{source}/{device}`: a meter or gateway posts a SenML pack; the readings are
//! stored and published (PubSub items and notifications, generation-2 pushes) before the answer.
//!
//! The steps, each with its own answer, in the order that spends least on a request that will be
//! refused: the device (404, or 403 for a device of another source), its bearer token (401;
//! 403 for the token of another device), its rate (429 with `Retry-After`), the media type
//! (415), the body's size (413, `[web] max_body`), the pack itself (400, with an RFC 9457 problem
//! document naming the record and field; nothing of a refused pack is stored). Then `204`.
//!
//! Accepted packs are written by group commit: each request builds its PubSub item and
//! notifications in its own task and queues them with its readings; one writer at a time takes
//! everything queued and writes it in one transaction (readings, items, publications and audit
//! entries of every pack), with statements per group rather than per pack, and answers them all.
//! Many devices posting at once then cost one flush to disk and a few statements per group,
//! which is what bounds throughput on SQLite. The writer runs on a thread of its own (see
//! [`run_writer`]), so a client that hangs up does not cut a group short.
//!
//! A gateway that timed out retries the same pack: the readings' upsert reports which rows it
//! inserted or changed, and only those (once each in a group) are published, so a retry
//! publishes nothing twice, even when two instances on one PostgreSQL receive it at once (the
//! second waits on the first's row locks, then finds the readings stored). Every accepted
//! request is audited in the same transaction (command `ingest`, one entry per series,
//! requester the device's JID, records and time range of the pack). Tokens are compared
//! in constant time on their SHA-256 digests and never logged: only the device's name is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::model::{audit_command, AuditEntry, Batch, Item, Series, UsagePoint};
use crate::publisher::Publisher;
use crate::source::http::decode::{decode, Format, Refusal};
use crate::source::http::readings::readings;
use crate::source::http::{Device, HttpSettings};
use crate::store::{NewPublication, StoreError};

/// Media type of our error answers (RFC 9457).
const PROBLEM: &str = "application/problem+json";

/// Metrics label of requests naming no configured device: what a client writes in the URL is
/// never a label.
const UNKNOWN_DEVICE: &str = "_unknown";

/// The ingest side of the `http` sources: their devices, tokens and rates, and the publisher
/// their readings go through.
pub struct Ingest {
    /// Source id → device id → device.
    sources: HashMap<String, HashMap<String, Arc<Endpoint>>>,
    publisher: Arc<Publisher>,
    metrics: Metrics,
    /// Accepted packs, to the writer (see [`run_writer`]).
    jobs: mpsc::UnboundedSender<Job>,
}

/// Most packs written in one group: bounds one transaction's size however many wait.
const MAX_GROUP: usize = 256;

/// An accepted pack waiting to be written, and who waits for the outcome.
struct Job {
    endpoint: Arc<Endpoint>,
    batches: Vec<Batch>,
    /// Each batch's item and notifications, built by the request's own task (the writer only
    /// rebuilds those of a batch it shortens); `None` for a series the device lacks.
    prepared: Vec<Option<(Item, NewPublication)>>,
    now: i64,
    done: oneshot::Sender<Result<(), Problem>>,
}

/// One device as the route needs it.
struct Endpoint {
    device: Device,
    /// The usage point and series the source declares for the device.
    usage_point: UsagePoint,
    series: Vec<Series>,
    /// Whether the store knows them yet (the source's task declares them at its start).
    declared: AtomicBool,
    /// `<device>@<domain>`, the requester of its audit entries.
    jid: String,
    retention: std::time::Duration,
    /// SHA-256 of the token: compared in constant time, and the token itself stays in config.
    digest: [u8; 32],
    limiter: DefaultDirectRateLimiter,
    /// Requests per second and burst, for the 429 message.
    rate: (u32, u32),
    /// `source/device`, the metrics label.
    label: String,
}

impl Ingest {
    /// The route's view of `sources` (validated `http` tables); readings go through
    /// `publisher`. Starts the writer's thread (see [`run_writer`]), which ends once the
    /// `Ingest` is dropped; fails if the thread cannot be started.
    pub(crate) fn new(
        sources: Vec<HttpSettings>,
        publisher: Publisher,
        metrics: Metrics,
    ) -> std::io::Result<Ingest> {
        let publisher = Arc::new(publisher);
        let (jobs, queued) = mpsc::unbounded_channel();
        run_writer(publisher.clone(), queued)?;
        let sources = sources
            .into_iter()
            .map(|s| {
                let quota = Quota::per_second(s.requests_per_second).allow_burst(s.requests_burst);
                let devices = s
                    .devices
                    .iter()
                    .map(|d| {
                        let endpoint = Endpoint {
                            device: d.clone(),
                            usage_point: d.usage_point(&s.id),
                            series: d.series_models(),
                            declared: AtomicBool::new(false),
                            jid: publisher.ctx.usage_point_jid(&d.id).to_string(),
                            retention: s.retention,
                            digest: digest(d.token.expose()),
                            limiter: RateLimiter::direct(quota),
                            rate: (s.requests_per_second.get(), s.requests_burst.get()),
                            label: format!("{}/{}", s.id, d.id),
                        };
                        (d.id.clone(), Arc::new(endpoint))
                    })
                    .collect();
                (s.id.clone(), devices)
            })
            .collect();
        Ok(Ingest {
            sources,
            publisher,
            metrics,
            jobs,
        })
    }

    /// The device `source/device`, or the answer for a path naming none.
    fn endpoint(&self, source: &str, device: &str) -> Result<Arc<Endpoint>, Problem> {
        if let Some(found) = self.sources.get(source).and_then(|s| s.get(device)) {
            return Ok(found.clone());
        }
        if self.sources.values().any(|s| s.contains_key(device)) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("device {device} is not a device of source {source}"),
            ));
        }
        Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no device {device} in an http source {source}"),
        ))
    }

    /// Whether `presented` is the token of a device other than `endpoint`.
    fn token_of_another(&self, endpoint: &Endpoint, presented: &[u8; 32]) -> bool {
        self.sources
            .values()
            .flat_map(|s| s.values())
            .filter(|e| !std::ptr::eq(e.as_ref(), endpoint))
            .fold(false, |found, e| found | same(&e.digest, presented))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in a time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An answer other than 204: a status and an RFC 9457 problem document.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    record: Option<usize>,
    field: Option<String>,
    /// Seconds, for 429 and 503.
    retry_after: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            record: None,
            field: None,
            retry_after: None,
        }
    }

    fn refused(refusal: Refusal) -> Problem {
        Problem {
            status: StatusCode::BAD_REQUEST,
            detail: refusal.to_string(),
            record: refusal.record,
            field: refusal.field,
            retry_after: None,
        }
    }

    /// The 413 of a body over `[web] max_body` bytes.
    pub(crate) fn too_large(max_body: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max_body} bytes ([web] max_body)"),
        )
    }

    /// The answer to a store failure (logged by the caller).
    fn store(e: &StoreError) -> Problem {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the readings could not be stored; nothing was published; try again",
        );
        if e.is_transient() {
            p.retry_after = Some(1);
        } else {
            p.status = StatusCode::INTERNAL_SERVER_ERROR;
        }
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut doc = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(record) = self.record {
            doc["record"] = record.into();
        }
        if let Some(field) = &self.field {
            doc["field"] = field.as_str().into();
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, PROBLEM)],
            doc.to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quoalise-ingest\""),
            );
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Answers a `POST` to `/ingest/{source}/{device}` (`ingest`: `None` when no `http` source
/// is configured); `max_body` is `[web] max_body`.
pub(crate) async fn post(
    ingest: Option<Arc<Ingest>>,
    max_body: usize,
    source: &str,
    device: &str,
    request: Request,
) -> Response {
    let Some(ingest) = ingest else {
        return Problem::new(StatusCode::NOT_FOUND, "no http source is configured").into_response();
    };
    let endpoint = match ingest.endpoint(source, device) {
        Ok(e) => e,
        Err(p) => {
            ingest
                .metrics
                .ingest_request(UNKNOWN_DEVICE, p.status.as_u16(), 0);
            return p.into_response();
        }
    };
    let (status, stored, answer) = match handle(&ingest, endpoint.clone(), max_body, request).await
    {
        Ok(stored) => (
            StatusCode::NO_CONTENT,
            stored,
            StatusCode::NO_CONTENT.into_response(),
        ),
        Err(p) => {
            tracing::debug!(device = %endpoint.label, status = p.status.as_u16(), detail = %p.detail, "ingest refused");
            (p.status, 0, p.into_response())
        }
    };
    ingest
        .metrics
        .ingest_request(&endpoint.label, status.as_u16(), stored);
    answer
}

/// Everything after the device is known; returns how many readings the pack held.
async fn handle(
    ingest: &Arc<Ingest>,
    endpoint: Arc<Endpoint>,
    max_body: usize,
    request: Request,
) -> Result<u64, Problem> {
    let (parts, body) = request.into_parts();
    authenticate(ingest, &endpoint, &parts.headers)?;
    if let Err(not_until) = endpoint.limiter.check() {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "device {} may post {} requests per second (burst {})",
                endpoint.label, endpoint.rate.0, endpoint.rate.1
            ),
        );
        // Whole seconds, rounded up: "0" would invite an immediate retry.
        p.retry_after = Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        return Err(p);
    }
    let format = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::of_content_type)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send application/senml+json, application/senml+cbor or application/senml+xml",
            )
        })?;
    let body = read_body(body, max_body).await?;
    let pack = decode(format, &body).map_err(Problem::refused)?;
    let now = crate::time::now();
    let read =
        readings(&pack, &endpoint.device, now, endpoint.retention).map_err(Problem::refused)?;
    let records = u64::try_from(read.records).unwrap_or(u64::MAX);
    // Built here, in the request's own task, while the writer writes others' packs.
    let prepared = read
        .batches
        .iter()
        .map(|batch| {
            let series = endpoint.series.iter().find(|s| s.path == batch.series)?;
            Some(
                ingest
                    .publisher
                    .item_and_notifications(&endpoint.usage_point, series, batch),
            )
        })
        .collect();
    write(ingest, endpoint, read.batches, prepared, now).await?;
    Ok(records)
}

/// Checks the `Authorization: Bearer` header against the device's token.
fn authenticate(ingest: &Ingest, endpoint: &Endpoint, headers: &HeaderMap) -> Result<(), Problem> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "send the device's token as Authorization: Bearer <token>",
            )
        })?;
    let presented = digest(presented);
    if same(&endpoint.digest, &presented) {
        return Ok(());
    }
    if ingest.token_of_another(endpoint, &presented) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token is another device's; it may not post for {}",
                endpoint.label
            ),
        ));
    }
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        format!("wrong token for device {}", endpoint.label),
    ))
}

/// The body, at most `max_body` bytes (a body without a `Content-Length` is cut there too).
async fn read_body(body: Body, max_body: usize) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > max_body {
            return Err(Problem::too_large(max_body));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Queues an accepted pack for the next group commit and waits for its outcome.
async fn write(
    ingest: &Ingest,
    endpoint: Arc<Endpoint>,
    batches: Vec<Batch>,
    prepared: Vec<Option<(Item, NewPublication)>>,
    now: i64,
) -> Result<(), Problem> {
    let (done, outcome) = oneshot::channel();
    let job = Job {
        endpoint,
        batches,
        prepared,
        now,
        done,
    };
    let stopped = || {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the writer stopped before storing the readings; try again",
        )
        .with_retry_after(1)
    };
    ingest.jobs.send(job).map_err(|_| stopped())?;
    outcome.await.unwrap_or_else(|_| Err(stopped()))
}

/// Starts the writer: a thread of its own, with a runtime of its own, that takes the queued
/// packs (all of them, up to [`MAX_GROUP`]) and writes them as one group, again and again,
/// until every sender is gone.
///
/// Why a thread: a group is some twenty statements, each a round trip to the database's own
/// thread, and a writer task on the shared runtime waited behind the requests' tasks (decoding
/// and building items) at every one of them, milliseconds each time. Alone on its runtime, it
/// runs as soon as the database answers. A client that hangs up does not cut a group short.
fn run_writer(
    publisher: Arc<Publisher>,
    mut queued: mpsc::UnboundedReceiver<Job>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                while let Some(first) = queued.recv().await {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match queued.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    commit(&publisher, group).await;
                }
            });
        })?;
    Ok(())
}

/// Writes a group of packs, their audit entries with them, and answers each: a store failure
/// fails the whole group (nothing of it is stored), and each pack is answered with it.
async fn commit(publisher: &Publisher, jobs: Vec<Job>) {
    let store = publisher.ctx.store.as_ref();
    // Devices whose declaration the store does not hold yet are answered alone, without
    // failing the group.
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match declared(store, &job.endpoint).await {
            Ok(true) => ready.push(job),
            Ok(false) => {
                let p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "device {} is not declared yet (the source is starting); try again",
                        job.endpoint.label
                    ),
                )
                .with_retry_after(5);
                let _ = job.done.send(Err(p));
            }
            Err(e) => {
                tracing::error!(error = %e, device = %job.endpoint.label, "ingest: cannot read the device's series");
                let _ = job.done.send(Err(Problem::store(&e)));
            }
        }
    }
    match write_group(publisher, &ready).await {
        Ok(()) => {
            for job in ready {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, packs = ready.len(), "ingest: cannot store readings");
            for job in ready {
                let _ = job.done.send(Err(Problem::store(&e)));
            }
        }
    }
}

/// Whether the store holds `endpoint`'s usage point with all its series (remembered once true).
async fn declared(
    store: &dyn crate::store::Store,
    endpoint: &Endpoint,
) -> Result<bool, StoreError> {
    if endpoint.declared.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let known = store.series(&endpoint.device.id).await?;
    let all = endpoint
        .series
        .iter()
        .all(|s| known.iter().any(|k| k.path == s.path));
    endpoint.declared.store(all, Ordering::Relaxed);
    Ok(all)
}

/// Every pack of the group and its audit entries, in one store transaction that publishes only
/// the readings the store did not hold with the same value (nor an earlier pack of the group).
async fn write_group(publisher: &Publisher, jobs: &[Job]) -> Result<(), StoreError> {
    let mut batches = Vec::new();
    // For each batch of `batches`: its job, its index there, and its series.
    let mut origin: Vec<(&Job, usize, &Series)> = Vec::new();
    let mut audit = Vec::new();
    for job in jobs {
        let endpoint = &job.endpoint;
        for (k, batch) in job.batches.iter().enumerate() {
            let (Some(first), Some(last)) = (batch.readings.first(), batch.readings.last()) else {
                continue;
            };
            let Some(series) = endpoint.series.iter().find(|s| s.path == batch.series) else {
                continue;
            };
            batches.push(batch.clone());
            origin.push((job, k, series));
            audit.push(AuditEntry {
                requester: endpoint.jid.clone(),
                usage_point: batch.usage_point.clone(),
                series: batch.series.clone(),
                start: first.time,
                end: last.time.saturating_add(1),
                grant_id: None,
                command: audit_command::INGEST.into(),
                records: i64::try_from(batch.readings.len()).unwrap_or(i64::MAX),
                at: job.now,
            });
        }
    }
    // The item and notifications the request built for its whole pack, or, for a pack the
    // store shortened (a retry, a reading already held), those of what is new in it.
    let prepare = |index: usize, new: &Batch| {
        let (job, k, series) = origin[index];
        match &job.prepared[k] {
            Some((item, publication)) if new.readings.len() == job.batches[k].readings.len() => {
                (item.clone(), publication.clone())
            }
            _ => publisher.item_and_notifications(&job.endpoint.usage_point, series, new),
        }
    };
    let counts = publisher.publish_new(&batches, &prepare, &audit).await?;
    for ((job, _, series), new) in origin.iter().zip(counts) {
        tracing::debug!(
            device = %job.endpoint.label, series = %series.path, new, "ingest accepted"
        );
    }
    Ok(())
}

impl Problem {
    fn with_retry_after(mut self, secs: u64) -> Problem {
        self.retry_after = Some(secs);
        self
    }
}
