//! The `enedis` source at work: history fetched on demand with the store as a per-day cache,
//! the daily poll of D-1, consents turned into usage points and grants, and their revocation.
//!
//! Unlike the other sources this one reads and writes the store itself: the store is its cache
//! (a day already fetched is never paid for again) and a history request must find the days it
//! asked for stored before it is answered. Live publication still goes through the publisher.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Days, NaiveDate};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::client::{CallContext, Client, ClientError, ClientSettings};
use super::config::EnedisConfig;
use super::meter;
use super::parse::{Direction, Kind};
use super::windows::{
    days_of, history_limit, plan_missing, DAILY_HISTORY_MONTHS, DAILY_MAX_DAYS,
    LOAD_CURVE_HISTORY_MONTHS, LOAD_CURVE_MAX_DAYS,
};
use crate::audit;
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::{audit_command, Batch, Consent, Grant, GrantOrigin, ANY};
use crate::source::{FetchError, SourceEvent, Upstream};
use crate::store::Store;
use crate::time::now;
use crate::time::paris::{self, date_of};

/// Who the `<upstream-error>` names.
pub(crate) const ISSUER: &str = "enedis-data-connect";
/// Enedis' answer when the customer withdrew the consent.
pub(crate) const NO_CONSENT: &str = "ADAM-DC-0008";
/// Days after which a day Enedis had no data for is not asked again: data arrive by D+1,
/// corrections within a few days.
const SETTLED_DAYS: u64 = 7;
/// Days before today the daily poll looks at (yesterday, and a missed poll or two).
const POLL_DAYS: u64 = 3;

/// What the callback learnt from Enedis about a consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentedMeter {
    pub prm: String,
    pub consumption: bool,
    pub production: bool,
    /// End of Enedis' service (unix seconds), when it gave one.
    pub service_end: Option<i64>,
}

pub struct Enedis {
    pub(crate) config: EnedisConfig,
    client: Client,
    store: Arc<dyn Store>,
    events: mpsc::Sender<SourceEvent>,
    access_changed: Arc<Notify>,
    /// One fetch at a time per usage point, so two requests for the same missing days pay once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Enedis {
    pub fn new(
        config: EnedisConfig,
        client_secret: Secret,
        store: Arc<dyn Store>,
        metrics: Metrics,
        events: mpsc::Sender<SourceEvent>,
        access_changed: Arc<Notify>,
    ) -> Result<Enedis, String> {
        let client = Client::new(
            ClientSettings {
                source: config.id.clone(),
                api_url: config.api_url.clone(),
                client_id: config.client_id.clone(),
                client_secret,
                per_second: config.requests_per_second,
                per_hour: config.requests_per_hour,
                max_quota_wait: config.max_quota_wait.0,
                request_timeout: config.request_timeout.0,
            },
            store.clone(),
            metrics,
        )?;
        Ok(Enedis {
            config,
            client,
            store,
            events,
            access_changed,
            fetching: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.config.id
    }

    /// Fetches the days of `[start, end)` (unix seconds) not fetched yet for one series, stores
    /// their readings and marks them fetched; returns the new batches. Nothing is fetched
    /// without a consent in force.
    pub(crate) async fn fetch_missing(
        &self,
        prm: &str,
        kind: Kind,
        direction: Direction,
        (start, end): (i64, i64),
        requester: Option<&str>,
        today: NaiveDate,
    ) -> Result<Vec<Batch>, FetchError> {
        let Some(endpoint) = super::client::endpoint(kind, direction) else {
            return Ok(Vec::new());
        };
        let Some(consent) = self.consent_for(prm).await? else {
            return Ok(Vec::new());
        };
        let Some((first, last)) = paris::dates_covering(start, end) else {
            return Ok(Vec::new());
        };
        let (months, max_days) = match kind {
            Kind::LoadCurve => (LOAD_CURVE_HISTORY_MONTHS, LOAD_CURVE_MAX_DAYS),
            Kind::DailyEnergy | Kind::DailyMaxPower => (DAILY_HISTORY_MONTHS, DAILY_MAX_DAYS),
        };
        let Some(earliest) = history_limit(today, months) else {
            return Ok(Vec::new());
        };

        let lock = self.lock_for(prm);
        let _guard = lock.lock().await;
        let day_text = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let fetched: BTreeSet<NaiveDate> = self
            .store
            .fetched_days(prm, endpoint, &day_text(first), &day_text(last))
            .await
            .map_err(internal)?
            .iter()
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .collect();
        let windows = plan_missing(first, last, max_days, today, earliest, &fetched);
        let context = CallContext {
            usage_point: Some(prm.to_owned()),
            consent_id: consent.id,
            requester: requester.map(str::to_owned),
        };
        let settled = today.checked_sub_days(Days::new(SETTLED_DAYS));
        let wanted = kind.path(direction);
        let mut batches = Vec::new();
        for window in windows {
            let answer = match self
                .client
                .measure(kind, direction, prm, &window, &context)
                .await
            {
                Ok(answer) => answer,
                Err(e) => return Err(self.failed(prm, e).await),
            };
            let mut with_data = BTreeSet::new();
            for series in answer.into_iter().filter(|s| s.path == wanted) {
                for reading in &series.readings {
                    if let Some(day) = date_of(reading.time) {
                        with_data.insert(day);
                    }
                }
                if let Some(step) = series.sampling_interval.as_deref() {
                    self.follow_step(prm, kind, direction, step).await?;
                }
                let batch = series.into_batch(prm);
                if !batch.readings.is_empty() {
                    self.store.insert_readings(&batch).await.map_err(internal)?;
                    batches.push(batch);
                }
            }
            // A day with data is never asked again; a day without is asked again until it is
            // old enough for Enedis to have nothing more to give.
            let done: Vec<String> = days_of(&window)
                .filter(|d| with_data.contains(d) || settled.is_some_and(|s| *d < s))
                .map(day_text)
                .collect();
            self.store
                .mark_fetched(prm, endpoint, &done, now())
                .await
                .map_err(internal)?;
        }
        Ok(batches)
    }

    /// Load curves come at the meter's own step (PT30M mostly, PT10M or PT60M on some meters):
    /// the series' metadata follows what Enedis sends.
    async fn follow_step(
        &self,
        prm: &str,
        kind: Kind,
        direction: Direction,
        step: &str,
    ) -> Result<(), FetchError> {
        if kind != Kind::LoadCurve {
            return Ok(());
        }
        let path = kind.path(direction);
        let known = self.store.series(prm).await.map_err(internal)?;
        let mut series = match known.into_iter().find(|s| s.path == path) {
            Some(s) if s.measurement.sampling_interval == step => return Ok(()),
            Some(s) => s,
            None => meter::series(prm, kind, direction),
        };
        series.measurement.sampling_interval = step.to_owned();
        let up = self
            .store
            .usage_point(prm)
            .await
            .map_err(internal)?
            .unwrap_or_else(|| meter::usage_point(self.id(), prm));
        self.store
            .declare_usage_point(&up, &[series])
            .await
            .map_err(internal)
    }

    /// Turns a failed call into what the requester sees; a withdrawn consent also ends access
    /// to `prm` (empty when the call was about no meter in particular).
    async fn failed(&self, prm: &str, error: ClientError) -> FetchError {
        match error {
            ClientError::Upstream(e) => {
                if e.code == NO_CONSENT && !prm.is_empty() {
                    self.revoke(prm).await;
                }
                FetchError::Upstream {
                    issuer: ISSUER,
                    code: e.code,
                    message: e.message,
                }
            }
            // The client's own texts are the messages: one wording per failure.
            e @ ClientError::Transport(_) => FetchError::Upstream {
                issuer: ISSUER,
                code: "unreachable".into(),
                message: e.to_string(),
            },
            e @ ClientError::Quota { .. } => FetchError::Busy {
                message: e.to_string(),
            },
            e @ ClientError::Invalid { .. } => FetchError::Upstream {
                issuer: ISSUER,
                code: "invalid-answer".into(),
                message: e.to_string(),
            },
            ClientError::Store(e) => internal(e),
        }
    }

    /// The customer withdrew the consent: revoke it and its grants, and have subscriptions
    /// ended now rather than at the next periodic check.
    pub(crate) async fn revoke(&self, prm: &str) {
        match self.store.revoke_consents(prm).await {
            Ok(revoked) => {
                audit::record_all(
                    self.store.as_ref(),
                    &audit::consents_ended("enedis", &revoked),
                )
                .await;
                tracing::warn!(
                    usage_point = prm,
                    consents = revoked.len(),
                    "Enedis reports no consent; access revoked"
                );
                self.access_changed.notify_one();
            }
            Err(e) => tracing::error!(error = %e, usage_point = prm, "cannot revoke consents"),
        }
    }

    async fn consent_for(&self, prm: &str) -> Result<Option<Consent>, FetchError> {
        Ok(self
            .store
            .active_consents(self.id(), now())
            .await
            .map_err(internal)?
            .into_iter()
            .rev()
            .find(|c| c.usage_point == prm))
    }

    fn lock_for(&self, prm: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(prm.to_owned()).or_default().clone()
    }

    /// What a consent (`autorisation_id`) covers, from `subscribed_services`.
    pub(crate) async fn consented_meters(
        &self,
        autorisation_id: &str,
    ) -> Result<Vec<ConsentedMeter>, FetchError> {
        let services = self
            .client
            .subscribed_services(autorisation_id, &CallContext::default())
            .await;
        let services = match services {
            Ok(s) => s,
            Err(e) => return Err(self.failed("", e).await),
        };
        let mut meters: Vec<ConsentedMeter> = Vec::new();
        for service in services.into_iter().filter(|s| s.is_live()) {
            if !meter::is_prm(&service.point_id) {
                tracing::warn!(point = %service.point_id, "subscribed service with an invalid PRM");
                continue;
            }
            let end = service
                .date_fin
                .as_deref()
                .and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok())
                .and_then(paris::midnight);
            // Neither flag set: a consumption meter (the flags are optional in the Swagger).
            let consumption = service.soutirage || !service.injection;
            match meters.iter_mut().find(|m| m.prm == service.point_id) {
                Some(m) => {
                    m.consumption |= consumption;
                    m.production |= service.injection;
                    m.service_end = m.service_end.max(end);
                }
                None => meters.push(ConsentedMeter {
                    prm: service.point_id,
                    consumption,
                    production: service.injection,
                    service_end: end,
                }),
            }
        }
        Ok(meters)
    }

    /// Records a consent: the usage point and its series, the consent, the app's grant.
    /// Returns the consent id.
    pub async fn record_consent(
        &self,
        meter: &ConsentedMeter,
        consent: Consent,
    ) -> Result<i64, FetchError> {
        let up = meter::usage_point(self.id(), &meter.prm);
        let series: Vec<_> = meter::measures(meter.consumption, meter.production)
            .into_iter()
            .map(|(k, d)| meter::series(&meter.prm, k, d))
            .collect();
        self.store
            .declare_usage_point(&up, &series)
            .await
            .map_err(internal)?;
        let grant = Grant {
            id: None,
            subject: consent.app_jid.clone(),
            usage_point: meter.prm.clone(),
            series: ANY.into(),
            valid_from: Some(consent.begins_at),
            valid_until: Some(consent.expires_at),
            origin: GrantOrigin::Consent,
            purpose: Some(consent.purpose.clone()),
        };
        let (consent_id, grant_id) = self
            .store
            .record_consent(&consent, &grant)
            .await
            .map_err(internal)?;
        audit::record(
            self.store.as_ref(),
            audit::event(
                &consent.app_jid,
                audit_command::CONSENT_GIVEN,
                &meter.prm,
                ANY,
                Some(grant_id),
                1,
            ),
        )
        .await;
        tracing::info!(
            usage_point = %meter.prm,
            app = %consent.app_jid,
            consent_id,
            "consent recorded"
        );
        Ok(consent_id)
    }

    /// One round of the daily poll for `today`: the last days of every consented meter's
    /// series; new readings are published. Returns how many series still lack yesterday.
    pub async fn poll_once(&self, today: NaiveDate) -> usize {
        let consents = match self.store.active_consents(self.id(), now()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "daily poll: cannot list consents");
                return 1;
            }
        };
        let prms: BTreeSet<String> = consents.into_iter().map(|c| c.usage_point).collect();
        let (Some(from), Some(yesterday)) = (
            today.checked_sub_days(Days::new(POLL_DAYS)),
            today.pred_opt(),
        ) else {
            return 0;
        };
        let (Some(start), Some(end)) = (paris::midnight(from), paris::midnight(today)) else {
            return 0;
        };
        let mut lacking = 0;
        for prm in prms {
            let series = match self.store.series(&prm).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, usage_point = %prm, "daily poll: no series");
                    continue;
                }
            };
            for s in series {
                let Some((kind, direction)) = meter::measure_of(&s.path) else {
                    continue;
                };
                match self
                    .fetch_missing(&prm, kind, direction, (start, end), None, today)
                    .await
                {
                    Ok(batches) => {
                        let has_yesterday = batches
                            .iter()
                            .flat_map(|b| &b.readings)
                            .any(|r| date_of(r.time) == Some(yesterday));
                        let endpoint = super::client::endpoint(kind, direction).unwrap_or("");
                        if !has_yesterday && !self.was_fetched(&prm, endpoint, yesterday).await {
                            lacking += 1;
                        }
                        for batch in batches {
                            if self.events.send(SourceEvent::Live(batch)).await.is_err() {
                                return lacking;
                            }
                        }
                    }
                    Err(e) => {
                        lacking += 1;
                        tracing::warn!(usage_point = %prm, series = %s.path, error = ?e, "daily poll failed");
                    }
                }
            }
        }
        lacking
    }

    async fn was_fetched(&self, prm: &str, endpoint: &str, day: NaiveDate) -> bool {
        let first = day.format("%Y-%m-%d").to_string();
        let end = day
            .succ_opt()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        self.store
            .fetched_days(prm, endpoint, &first, &end)
            .await
            .is_ok_and(|days| !days.is_empty())
    }

    /// The daily poll, until `shutdown`: at `poll_time` (Europe/Paris), then again every
    /// `poll_retry` while yesterday is missing, at most `poll_attempts` times.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(poll_time) = self.config.poll_time() else {
            tracing::error!(source = self.id(), "invalid poll_time; daily poll disabled");
            return;
        };
        loop {
            let wait = until_next(poll_time, now());
            tracing::debug!(
                source = self.id(),
                seconds = wait.as_secs(),
                "next daily poll"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            for attempt in 1..=self.config.poll_attempts {
                let Some(today) = date_of(now()) else {
                    break;
                };
                let lacking = self.poll_once(today).await;
                tracing::info!(source = self.id(), attempt, lacking, "daily poll done");
                if lacking == 0 || attempt == self.config.poll_attempts {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll_retry.0) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

#[async_trait]
impl Upstream for Enedis {
    async fn ensure(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
        requester: &str,
    ) -> Result<(), FetchError> {
        let Some((kind, direction)) = meter::measure_of(series) else {
            return Ok(());
        };
        let Some(today) = date_of(now()) else {
            return Ok(());
        };
        self.fetch_missing(
            usage_point,
            kind,
            direction,
            (start, end),
            Some(requester),
            today,
        )
        .await
        .map(|_| ())
    }
}

fn internal(e: impl std::fmt::Display) -> FetchError {
    FetchError::Internal(e.to_string())
}

/// Time from `now` to the next `at` in Europe/Paris (tomorrow's if today's has passed).
fn until_next(at: chrono::NaiveTime, now: i64) -> Duration {
    paris::next_at(at, now).map_or(Duration::from_secs(3600), |t| {
        Duration::from_secs(u64::try_from(t - now).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_poll_is_today_or_tomorrow_in_paris() {
        let at = chrono::NaiveTime::from_hms_opt(8, 30, 0).unwrap();
        // 2026-11-21T06:00:00Z is 07:00 in Paris (CET): 1 h 30 to go.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T06:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(until_next(at, now), Duration::from_secs(5400));
        // 08:30 in Paris has just passed: tomorrow, 24 h minus one second later.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T07:30:01Z")
            .unwrap()
            .timestamp();
        assert_eq!(until_next(at, now), Duration::from_secs(86_399));
    }

    #[test]
    fn a_poll_time_in_the_spring_gap_runs_an_hour_later_that_day() {
        // 02:30 does not exist in Paris on 2026-03-29: the poll runs at 03:30 CEST (01:30Z),
        // 2 h 30 after midnight (23:00Z), rather than being skipped to the next day.
        let at = chrono::NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-28T23:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(until_next(at, now), Duration::from_secs(9000));
    }
}
