//! Enedis Data Connect 2026: the HTTP client.
//!
//! One [`Client`] per `enedis` source. It holds the client-credentials token (cached until it
//! expires, fetched again on a 401), keeps Enedis' quotas (5 requests/s and 1000 requests/h per
//! API, with `governor`), stops calling an API that answered 429 or a gateway throttling code
//! until the time Enedis gave (`nextAccessTime`), and records every call in the store before
//! making it (who caused it, which usage point, which days, under which consent) and its outcome
//! after. Response bodies are handed to [`super::parse`] and [`super::errors`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{RequestBuilder, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::errors::{parse_error, UpstreamError};
use super::parse::{parse_measure, Direction, Kind, ParseError, SeriesReadings};
use super::windows::Window;
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::UpstreamCall;
use crate::store::{Store, StoreError};
use crate::time::now;

/// A token is used until this long before Enedis says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// How long an API is left alone after a throttling answer that gives no `nextAccessTime`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);
/// Longest back-off we accept from a `nextAccessTime` (a clock skew must not block us for days).
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Largest response body read; Enedis' biggest answers (a year of daily values, a week of
/// 10-minute load curve) are far below.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The API products Enedis counts quotas on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    Token,
    Measure,
    SubscribedServices,
}

impl Api {
    pub(crate) const ALL: [Api; 3] = [Api::Token, Api::Measure, Api::SubscribedServices];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Token => "oauth2",
            Api::Measure => "mesure_synchrone_auto",
            Api::SubscribedServices => "subscribed_services",
        }
    }
}

/// Why a call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// Enedis answered with an error (or we are still backing off from its throttling answer).
    #[error("{0}")]
    Upstream(UpstreamError),
    /// No answer: connection refused, timeout, TLS.
    #[error("Enedis is unreachable: {0}")]
    Transport(String),
    /// Our own quota would make the caller wait longer than `max_quota_wait`.
    #[error("Enedis quota for {api} reached; retry in {} s", retry_after.as_secs().max(1))]
    Quota {
        api: &'static str,
        retry_after: Duration,
    },
    /// A success answer we cannot read.
    #[error("unreadable answer from {api}: {detail}")]
    Invalid { api: &'static str, detail: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<ParseError> for ClientError {
    fn from(e: ParseError) -> Self {
        ClientError::Invalid {
            api: Api::Measure.name(),
            detail: e.to_string(),
        }
    }
}

/// What the call log records about the cause of a call.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallContext {
    pub(crate) usage_point: Option<String>,
    pub(crate) consent_id: Option<i64>,
    /// Bare JID; `None` for the component's own work (daily poll, consent exchange).
    pub(crate) requester: Option<String>,
}

/// Settings of a [`Client`], from the source's config.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    pub(crate) source: String,
    pub(crate) api_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) per_second: NonZeroU32,
    pub(crate) per_hour: NonZeroU32,
    pub(crate) max_quota_wait: Duration,
    pub(crate) request_timeout: Duration,
}

/// One subscribed service, as `POST /subscribed_services/v1` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscribedService {
    pub(crate) point_id: String,
    #[serde(default)]
    pub(crate) etat_code: String,
    #[serde(default)]
    pub(crate) date_debut: Option<String>,
    #[serde(default)]
    pub(crate) date_fin: Option<String>,
    #[serde(default)]
    pub(crate) soutirage: bool,
    #[serde(default)]
    pub(crate) injection: bool,
}

impl SubscribedService {
    /// Services in force or being set up; the others (`TERMINE`, `SUPPRIME`) are history.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.etat_code.as_str(), "ACTIF" | "DEMANDE")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribedServices {
    #[serde(default)]
    service_souscrit: Vec<SubscribedService>,
}

struct Token {
    value: Secret,
    expires: Instant,
}

struct Limits {
    second: DefaultDirectRateLimiter,
    hour: DefaultDirectRateLimiter,
}

/// Throttling: the API is not called again before `until`; callers get `error` meanwhile.
struct Backoff {
    until: Instant,
    error: UpstreamError,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    settings: ClientSettings,
    store: Arc<dyn Store>,
    metrics: Metrics,
    token: tokio::sync::Mutex<Option<Token>>,
    limits: HashMap<Api, Limits>,
    backoff: Mutex<HashMap<Api, Backoff>>,
}

impl Client {
    pub(crate) fn new(
        settings: ClientSettings,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Client, String> {
        let mut base = Url::parse(&settings.api_url).map_err(|e| format!("api_url: {e}"))?;
        // Joining relative paths keeps a base path (`https://host/prefix/`) only with the slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .user_agent(concat!("quoalise-component/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let limits = Api::ALL
            .into_iter()
            .map(|api| {
                // Any `per_hour` calls within an hour: a burst of that size, refilled evenly.
                let hour = Quota::per_hour(settings.per_hour).allow_burst(settings.per_hour);
                (
                    api,
                    Limits {
                        second: RateLimiter::direct(Quota::per_second(settings.per_second)),
                        hour: RateLimiter::direct(hour),
                    },
                )
            })
            .collect();
        Ok(Client {
            http,
            base,
            settings,
            store,
            metrics,
            token: tokio::sync::Mutex::new(None),
            limits,
            backoff: Mutex::new(HashMap::new()),
        })
    }

    /// Readings of one measure over `window` for `prm`. Days without data are simply absent.
    pub(crate) async fn measure(
        &self,
        kind: Kind,
        direction: Direction,
        prm: &str,
        window: &Window,
        context: &CallContext,
    ) -> Result<Vec<SeriesReadings>, ClientError> {
        let Some(endpoint) = endpoint(kind, direction) else {
            return Ok(Vec::new());
        };
        let url = self.url(&format!("mesure_synchrone_auto/v2/{endpoint}"))?;
        let (debut, fin) = (window.date_debut(), window.date_fin());
        let mut query = vec![("pointId", prm), ("dateDebut", &debut), ("dateFin", &fin)];
        if kind == Kind::DailyMaxPower {
            query.extend([("mesuresPas", "P1D"), ("grandeurPhysique", "PMA")]);
        }
        let log = LogEntry {
            api: Api::Measure,
            endpoint,
            range: Some((debut.clone(), fin.clone())),
        };
        match self
            .call(&log, context, |http, token| {
                http.get(url.clone())
                    .query(&query)
                    .bearer_auth(token)
                    .header("Accept", "application/json")
            })
            .await
        {
            Ok(body) => Ok(parse_measure(kind, &body)?),
            // Enedis answers 404 "no measure found" for a period without data: not a failure.
            Err(ClientError::Upstream(e)) if is_no_data(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The services a consent (`autorisation_id`) covers.
    pub(crate) async fn subscribed_services(
        &self,
        autorisation_id: &str,
        context: &CallContext,
    ) -> Result<Vec<SubscribedService>, ClientError> {
        let url = self.url("subscribed_services/v1")?;
        // The Swagger types the id as an int64; keep a non-numeric one (never seen) as a string.
        let id = autorisation_id
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(autorisation_id));
        let body = serde_json::json!({ "autorisationId": id, "comptage": false }).to_string();
        let log = LogEntry {
            api: Api::SubscribedServices,
            endpoint: "subscribed_services",
            range: None,
        };
        let answer = self
            .call(&log, context, |http, token| {
                http.post(url.clone())
                    .bearer_auth(token)
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json")
                    .body(body.clone())
            })
            .await?;
        let parsed: SubscribedServices =
            serde_json::from_str(&answer).map_err(|e| ClientError::Invalid {
                api: Api::SubscribedServices.name(),
                detail: e.to_string(),
            })?;
        Ok(parsed.service_souscrit)
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Invalid {
            api: "url",
            detail: e.to_string(),
        })
    }

    /// Makes one logical call: quota, token, the request, a new token and one retry on 401.
    async fn call(
        &self,
        log: &LogEntry,
        context: &CallContext,
        build: impl Fn(&reqwest::Client, &str) -> RequestBuilder,
    ) -> Result<String, ClientError> {
        let token = self.token(false).await?;
        match self
            .send(log, context, build(&self.http, token.expose()))
            .await
        {
            Err(ClientError::Upstream(e)) if e.status == 401 => {
                tracing::info!(api = log.api.name(), "token refused; fetching a new one");
                let token = self.token(true).await?;
                self.send(log, context, build(&self.http, token.expose()))
                    .await
            }
            other => other,
        }
    }

    /// The current token, fetched when missing, expired or `refresh`ed.
    async fn token(&self, refresh: bool) -> Result<Secret, ClientError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if !refresh && Instant::now() < token.expires {
                return Ok(token.value.clone());
            }
        }
        let url = self.url("oauth2/v3/token")?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose()),
        ];
        let log = LogEntry {
            api: Api::Token,
            endpoint: "token",
            range: None,
        };
        let request = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .form(&form);
        let body = self.send(&log, &CallContext::default(), request).await?;
        let (value, lifetime) = read_token(&body).ok_or_else(|| ClientError::Invalid {
            api: Api::Token.name(),
            detail: "no access_token in the token answer".into(),
        })?;
        let token = Token {
            value: Secret::new(value),
            expires: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Sends one HTTP request: back-off and quota first, then the call log, the request, the
    /// outcome in the log and the metrics.
    async fn send(
        &self,
        log: &LogEntry,
        context: &CallContext,
        request: RequestBuilder,
    ) -> Result<String, ClientError> {
        if let Some(error) = self.backing_off(log.api) {
            return Err(ClientError::Upstream(error));
        }
        self.wait_for_quota(log.api).await?;
        let call_id = self
            .store
            .start_upstream_call(&UpstreamCall {
                id: None,
                source: self.settings.source.clone(),
                api: log.endpoint.to_owned(),
                usage_point: context.usage_point.clone(),
                range_start: log.range.as_ref().map(|r| r.0.clone()),
                range_end: log.range.as_ref().map(|r| r.1.clone()),
                consent_id: context.consent_id,
                requester: context.requester.clone(),
                started_at: now(),
                status: None,
                code: None,
            })
            .await?;
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status();
                read_body(response)
                    .await
                    .map(|body| (status, body))
                    .map_err(|e| ClientError::Transport(e.to_string()))
            }
            Err(e) => Err(ClientError::Transport(describe(&e))),
        };
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.finish(call_id, log, "error", None).await;
                tracing::warn!(api = log.endpoint, error = %e, "Enedis call failed");
                return Err(e);
            }
        };
        if status.is_success() {
            self.finish(call_id, log, status.as_str(), None).await;
            return Ok(body);
        }
        let error = parse_error(status.as_u16(), &body);
        self.finish(call_id, log, status.as_str(), Some(&error.code))
            .await;
        if error.is_throttled() {
            self.back_off(log.api, &error);
        }
        if !is_no_data(&error) {
            tracing::warn!(api = log.endpoint, %error, "Enedis answered with an error");
        }
        Err(ClientError::Upstream(error))
    }

    async fn finish(&self, call_id: i64, log: &LogEntry, status: &str, code: Option<&str>) {
        self.metrics.upstream_call(log.endpoint, status);
        if let Err(e) = self.store.finish_upstream_call(call_id, status, code).await {
            tracing::error!(error = %e, call_id, "cannot record the outcome of an Enedis call");
        }
    }

    fn backing_off(&self, api: Api) -> Option<UpstreamError> {
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        match backoff.get(&api) {
            Some(b) if Instant::now() < b.until => Some(b.error.clone()),
            Some(_) => {
                backoff.remove(&api);
                None
            }
            None => None,
        }
    }

    fn back_off(&self, api: Api, error: &UpstreamError) {
        let delay = error
            .next_access_time
            .map(|t| Duration::from_secs(u64::try_from(t - now()).unwrap_or(0)))
            .unwrap_or(DEFAULT_BACKOFF)
            .min(MAX_BACKOFF);
        tracing::warn!(
            api = api.name(),
            seconds = delay.as_secs(),
            "Enedis throttles us; pausing calls to this API"
        );
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        backoff.insert(
            api,
            Backoff {
                until: Instant::now() + delay,
                error: error.clone(),
            },
        );
    }

    /// Takes one request from both quotas of `api`, waiting when the wait stays below
    /// `max_quota_wait`; refuses at once otherwise, so that no caller hangs for an hour.
    async fn wait_for_quota(&self, api: Api) -> Result<(), ClientError> {
        let Some(limits) = self.limits.get(&api) else {
            return Ok(());
        };
        let started = Instant::now();
        for limiter in [&limits.second, &limits.hour] {
            loop {
                match limiter.check() {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        if started.elapsed() + wait > self.settings.max_quota_wait {
                            return Err(ClientError::Quota {
                                api: api.name(),
                                retry_after: wait,
                            });
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        let waited = started.elapsed();
        if waited > Duration::from_millis(1) {
            self.metrics.quota_wait(api.name(), waited);
        }
        Ok(())
    }
}

/// What the call log says about a request.
struct LogEntry {
    api: Api,
    /// The endpoint's name, recorded as the call's API.
    endpoint: &'static str,
    range: Option<(String, String)>,
}

/// The measure endpoint of a kind and direction; Enedis has no production max power.
pub(crate) fn endpoint(kind: Kind, direction: Direction) -> Option<&'static str> {
    match (kind, direction) {
        (Kind::LoadCurve, Direction::Consumption) => Some("courbe_de_charge_consommation"),
        (Kind::LoadCurve, Direction::Production) => Some("courbe_de_charge_production"),
        (Kind::DailyEnergy, Direction::Consumption) => Some("consommation_quotidienne"),
        (Kind::DailyEnergy, Direction::Production) => Some("production_quotidienne"),
        (Kind::DailyMaxPower, Direction::Consumption) => Some("puissance_conso_max_quotidienne"),
        (Kind::DailyMaxPower, Direction::Production) => None,
    }
}

/// A 404 "no measure found" from the measure API (as opposed to a gateway 404, whose codes
/// are the numeric WSO2 ones).
fn is_no_data(error: &UpstreamError) -> bool {
    error.status == 404 && !error.code.starts_with('9') && error.code != "404"
}

/// `access_token` and its lifetime from a token answer (`expires_in` as a number or a string).
fn read_token(body: &str) -> Option<(String, Duration)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let token = value.get("access_token")?.as_str()?.to_owned();
    let seconds = match value.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(0);
    (!token.is_empty()).then_some((token, Duration::from_secs(seconds)))
}

/// Reads a body up to [`MAX_BODY`] bytes, as text.
async fn read_body(mut response: reqwest::Response) -> Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(format!("answer larger than {MAX_BODY} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A transport error with its causes (reqwest's own text is often just "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        text.push_str(" (timeout)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_read_leniently() {
        let (t, d) = read_token(r#"{"access_token":"abc","expires_in":12600}"#).unwrap();
        assert_eq!((t.as_str(), d.as_secs()), ("abc", 12600));
        let (_, d) = read_token(r#"{"access_token":"abc","expires_in":"3599"}"#).unwrap();
        assert_eq!(d.as_secs(), 3599);
        assert!(read_token(r#"{"access_token":""}"#).is_none());
        assert!(read_token("<html>").is_none());
    }

    #[test]
    fn only_measure_404s_mean_no_data() {
        let no_data = parse_error(
            404,
            r#"{"error":"no_data_found","error_description":"no measure found"}"#,
        );
        assert!(is_no_data(&no_data));
        let gateway = parse_error(
            404,
            r#"{"fault":{"code":900906,"message":"No matching resource"}}"#,
        );
        assert!(!is_no_data(&gateway));
        assert!(!is_no_data(&parse_error(404, "")));
        assert!(!is_no_data(&parse_error(
            400,
            r#"{"error":"ADAM-ERR0123"}"#
        )));
    }

    #[test]
    fn every_measure_has_an_endpoint_but_production_max_power() {
        assert_eq!(
            endpoint(Kind::LoadCurve, Direction::Consumption),
            Some("courbe_de_charge_consommation")
        );
        assert_eq!(endpoint(Kind::DailyMaxPower, Direction::Production), None);
    }

    #[test]
    fn subscribed_services_keep_live_ones() {
        let parsed: SubscribedServices = serde_json::from_str(
            r#"{"nbTotalServices":2,"serviceSouscrit":[
                {"pointId":"1","etatCode":"ACTIF","soutirage":true,"injection":false,"autorisation":{"autorisationId":7}},
                {"pointId":"2","etatCode":"TERMINE"}]}"#,
        )
        .unwrap();
        let live: Vec<_> = parsed
            .service_souscrit
            .iter()
            .filter(|s| s.is_live())
            .map(|s| s.point_id.as_str())
            .collect();
        assert_eq!(live, ["1"]);
    }
}
