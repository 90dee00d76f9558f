//! Operational metrics, rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! A handful of counters and gauges does not need a metrics crate: they live in small maps behind
//! one mutex, held only to bump a number or to render. Label values come from upstream answers
//! (HTTP status codes), so each metric keeps at most [`MAX_LABEL_SETS`] label sets: further ones
//! are counted under the label value [`OVERFLOW`], and a misbehaving upstream cannot grow memory
//! without bound.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// `Content-Type` of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Distinct label sets kept per metric, beyond which new ones are counted under [`OVERFLOW`].
pub(crate) const MAX_LABEL_SETS: usize = 1000;

/// Label value standing for every label set beyond [`MAX_LABEL_SETS`].
pub(crate) const OVERFLOW: &str = "_overflow";

/// The component's metrics; clones share the same values.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Default)]
struct Inner(Mutex<State>);

#[derive(Default)]
struct State {
    /// (api, status) → calls.
    upstream_calls: BTreeMap<(String, String), u64>,
    /// api → (waits, total time waited).
    quota_waits: BTreeMap<String, (u64, Duration)>,
    notifications_sent: u64,
    outbox_dropped: u64,
    outbox_pending: u64,
    subscriptions: u64,
    connected: bool,
    reconnects: u64,
    /// Sessions torn down because nothing could be written for the stall timeout.
    link_stalls: u64,
    /// Inbound stanzas refused before being read: (too deep, too large).
    stanzas_refused: (u64, u64),
    /// Requests refused by the per-requester limits: (in flight, rate).
    requests_limited: (u64, u64),
    /// The last health check: (xmpp, store, outbox) healthy.
    healthy: (bool, bool, bool),
    /// Lease name → whether this instance leads it now (`crate::lease`).
    leading: BTreeMap<String, bool>,
    /// (`source/device`, HTTP status) → ingest requests answered (`crate::web::ingest`).
    ingest_requests: BTreeMap<(String, String), u64>,
    /// `source/device` → readings stored by ingest requests answered 204.
    ingest_records: BTreeMap<String, u64>,
    /// The audit chain's head at the last anchor: (id, hash).
    audit_anchor: Option<(i64, String)>,
    /// The oldest undelivered notification's age, seconds (0: none waiting).
    outbox_oldest_age: u64,
    /// Consents in force.
    consents_active: u64,
}

/// The entry for `key`, or the overflow one once `map` holds [`MAX_LABEL_SETS`] other keys.
fn capped<K: Ord, V: Default>(
    map: &mut BTreeMap<K, V>,
    key: K,
    overflow: impl FnOnce() -> K,
) -> &mut V {
    let key = if map.contains_key(&key) || map.len() < MAX_LABEL_SETS {
        key
    } else {
        overflow()
    };
    map.entry(key).or_default()
}

impl Metrics {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves numbers, not broken invariants: keep counting.
        self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One call to an upstream API answered with `status` (the HTTP code, or `"error"` when no
    /// answer came: connection, TLS or timeout).
    pub(crate) fn upstream_call(&self, api: &str, status: &str) {
        let mut state = self.state();
        let calls = capped(
            &mut state.upstream_calls,
            (api.to_owned(), status.to_owned()),
            || (OVERFLOW.to_owned(), OVERFLOW.to_owned()),
        );
        *calls = calls.saturating_add(1);
    }

    /// A call to `api` waited `waited` for its rate-limit quota.
    pub(crate) fn quota_wait(&self, api: &str, waited: Duration) {
        let mut state = self.state();
        let (waits, total) = capped(&mut state.quota_waits, api.to_owned(), || {
            OVERFLOW.to_owned()
        });
        *waits = waits.saturating_add(1);
        *total = total.saturating_add(waited);
    }

    /// `n` more notifications were sent to subscribers.
    pub(crate) fn notifications_sent(&self, n: u64) {
        let mut state = self.state();
        state.notifications_sent = state.notifications_sent.saturating_add(n);
    }

    /// `n` waiting notifications were dropped by `[pubsub] max_pending`.
    pub(crate) fn outbox_dropped(&self, n: u64) {
        let mut state = self.state();
        state.outbox_dropped = state.outbox_dropped.saturating_add(n);
    }

    /// The current number of outbox entries not yet sent.
    pub(crate) fn set_outbox_pending(&self, n: u64) {
        self.state().outbox_pending = n;
    }

    /// The current number of subscriptions.
    /// The audit chain's head as anchored (hourly).
    pub(crate) fn set_audit_anchor(&self, id: i64, hash: &str) {
        self.state().audit_anchor = Some((id, hash.to_owned()));
    }

    pub(crate) fn set_outbox_oldest_age(&self, seconds: u64) {
        self.state().outbox_oldest_age = seconds;
    }

    pub(crate) fn set_consents_active(&self, n: u64) {
        self.state().consents_active = n;
    }

    pub(crate) fn set_subscriptions(&self, n: u64) {
        self.state().subscriptions = n;
    }

    /// Whether the XMPP link to the server is up.
    pub(crate) fn set_connected(&self, connected: bool) {
        self.state().connected = connected;
    }

    /// The XMPP link came back up after having been lost.
    pub(crate) fn reconnected(&self) {
        let mut state = self.state();
        state.reconnects = state.reconnects.saturating_add(1);
    }

    /// The outcome of the health check made at this scrape (what `/healthz` would say).
    pub(crate) fn set_health(&self, xmpp: bool, store: bool, outbox: bool) {
        self.state().healthy = (xmpp, store, outbox);
    }

    /// The link was torn down: it had something to write and wrote nothing for the stall timeout.
    pub(crate) fn link_stalled(&self) {
        let mut state = self.state();
        state.link_stalls = state.link_stalls.saturating_add(1);
    }

    /// An inbound stanza was refused for its depth (`deep`) or its size.
    pub(crate) fn stanza_refused(&self, deep: bool) {
        let mut state = self.state();
        let counter = if deep {
            &mut state.stanzas_refused.0
        } else {
            &mut state.stanzas_refused.1
        };
        *counter = counter.saturating_add(1);
    }

    /// A request was refused by a per-requester limit: in flight (`in_flight`) or rate.
    pub(crate) fn request_limited(&self, in_flight: bool) {
        let mut state = self.state();
        let counter = if in_flight {
            &mut state.requests_limited.0
        } else {
            &mut state.requests_limited.1
        };
        *counter = counter.saturating_add(1);
    }

    /// Whether this instance leads lease `name` (a source's task) now. Names come from the
    /// configuration, not the network: no cap needed.
    pub(crate) fn set_leading(&self, name: &str, leading: bool) {
        self.state().leading.insert(name.to_owned(), leading);
    }

    /// An ingest request for `device` (`source/device`, or a placeholder for unknown ones: the
    /// caller never passes what a client invented) was answered with `status`, storing
    /// `records` readings.
    pub(crate) fn ingest_request(&self, device: &str, status: u16, records: u64) {
        let mut state = self.state();
        let requests = capped(
            &mut state.ingest_requests,
            (device.to_owned(), status.to_string()),
            || (OVERFLOW.to_owned(), OVERFLOW.to_owned()),
        );
        *requests = requests.saturating_add(1);
        if records > 0 {
            let stored = capped(&mut state.ingest_records, device.to_owned(), || {
                OVERFLOW.to_owned()
            });
            *stored = stored.saturating_add(records);
        }
    }

    /// All metrics in the text exposition format, in a stable order (metrics as declared, label
    /// sets sorted).
    pub fn render(&self) -> String {
        let state = self.state();
        let mut out = String::with_capacity(1024);
        // `write!` to a String cannot fail: its results are ignored below.
        header(
            &mut out,
            "quoalise_upstream_calls_total",
            "counter",
            "Calls to upstream APIs, by API and HTTP status (\"error\": no answer).",
        );
        for ((api, status), calls) in &state.upstream_calls {
            let _ = writeln!(
                out,
                "quoalise_upstream_calls_total{{api=\"{}\",status=\"{}\"}} {calls}",
                escape_label(api),
                escape_label(status)
            );
        }
        header(
            &mut out,
            "quoalise_quota_waits_total",
            "counter",
            "Upstream calls that waited for their rate-limit quota, by API.",
        );
        for (api, (waits, _)) in &state.quota_waits {
            let _ = writeln!(
                out,
                "quoalise_quota_waits_total{{api=\"{}\"}} {waits}",
                escape_label(api)
            );
        }
        header(
            &mut out,
            "quoalise_quota_wait_seconds_total",
            "counter",
            "Time spent waiting for rate-limit quotas, by API.",
        );
        for (api, (_, waited)) in &state.quota_waits {
            let _ = writeln!(
                out,
                "quoalise_quota_wait_seconds_total{{api=\"{}\"}} {}",
                escape_label(api),
                waited.as_secs_f64()
            );
        }
        let scalars = [
            (
                "quoalise_notifications_sent_total",
                "counter",
                "Notifications sent to subscribers.",
                state.notifications_sent,
            ),
            (
                "quoalise_outbox_dropped_total",
                "counter",
                "Waiting notifications dropped because a subscription had [pubsub] max_pending \
                 waiting already (the subscriber is told how many).",
                state.outbox_dropped,
            ),
            (
                "quoalise_outbox_pending",
                "gauge",
                "Notifications not yet sent (publications after each subscription's cursor, and outbox entries).",
                state.outbox_pending,
            ),
            (
                "quoalise_outbox_oldest_age_seconds",
                "gauge",
                "Age of the oldest notification not yet sent (0 when none waits).",
                state.outbox_oldest_age,
            ),
            (
                "quoalise_subscriptions",
                "gauge",
                "Current subscriptions.",
                state.subscriptions,
            ),
            (
                "quoalise_consents_active",
                "gauge",
                "Consents in force (given, not revoked, not expired).",
                state.consents_active,
            ),
            (
                "quoalise_xmpp_connected",
                "gauge",
                "1 while the XMPP link to the server is up, 0 otherwise.",
                u64::from(state.connected),
            ),
            (
                "quoalise_xmpp_reconnects_total",
                "counter",
                "Times the XMPP link came back up after being lost.",
                state.reconnects,
            ),
        ];
        for (name, kind, help, value) in scalars {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "quoalise_audit_anchor",
            "gauge",
            "The audit chain's head at the last hourly anchor: its id as the value, its hash \
             as a label. Keep this history: it proves the log's past was not rewritten.",
        );
        if let Some((id, hash)) = &state.audit_anchor {
            // The hash is 64 hex digits written by the store: nothing to escape.
            let _ = writeln!(out, "quoalise_audit_anchor{{hash=\"{hash}\"}} {id}");
        }
        header(
            &mut out,
            "quoalise_healthy",
            "gauge",
            "1 when this part passes the health check (as /healthz), 0 otherwise.",
        );
        let (xmpp, store, outbox) = state.healthy;
        for (part, ok) in [("xmpp", xmpp), ("store", store), ("outbox", outbox)] {
            let _ = writeln!(out, "quoalise_healthy{{part=\"{part}\"}} {}", u8::from(ok));
        }
        header(
            &mut out,
            "quoalise_leading",
            "gauge",
            "1 while this instance leads this lease (runs this source's task), 0 while another does.",
        );
        for (lease, leading) in &state.leading {
            let _ = writeln!(
                out,
                "quoalise_leading{{lease=\"{}\"}} {}",
                escape_label(lease),
                u8::from(*leading)
            );
        }
        header(
            &mut out,
            "quoalise_xmpp_stalls_total",
            "counter",
            "Sessions torn down because nothing could be written for [xmpp] stall_timeout.",
        );
        let _ = writeln!(out, "quoalise_xmpp_stalls_total {}", state.link_stalls);
        header(
            &mut out,
            "quoalise_stanzas_refused_total",
            "counter",
            "Inbound stanzas refused before being read, by reason.",
        );
        let (deep, large) = state.stanzas_refused;
        let _ = writeln!(
            out,
            "quoalise_stanzas_refused_total{{reason=\"depth\"}} {deep}"
        );
        let _ = writeln!(
            out,
            "quoalise_stanzas_refused_total{{reason=\"size\"}} {large}"
        );
        header(
            &mut out,
            "quoalise_requests_limited_total",
            "counter",
            "Requests refused by the per-requester limits ([limits]), by limit.",
        );
        let (in_flight, rate) = state.requests_limited;
        let _ = writeln!(
            out,
            "quoalise_requests_limited_total{{limit=\"in_flight\"}} {in_flight}"
        );
        let _ = writeln!(
            out,
            "quoalise_requests_limited_total{{limit=\"rate\"}} {rate}"
        );
        header(
            &mut out,
            "quoalise_ingest_requests_total",
            "counter",
            "HTTP ingest requests (POST /ingest/{source}/{device}), by device and HTTP status.",
        );
        for ((device, status), n) in &state.ingest_requests {
            let _ = writeln!(
                out,
                "quoalise_ingest_requests_total{{device=\"{}\",status=\"{}\"}} {n}",
                escape_label(device),
                escape_label(status)
            );
        }
        header(
            &mut out,
            "quoalise_ingest_records_total",
            "counter",
            "Readings received by accepted HTTP ingest requests, by device.",
        );
        for (device, n) in &state.ingest_records {
            let _ = writeln!(
                out,
                "quoalise_ingest_records_total{{device=\"{}\"}} {n}",
                escape_label(device)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample line: name, labels (unescaped), value.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser for the subset of the format we write.
    fn parse(text: &str) -> (Vec<Sample>, Vec<String>) {
        let mut samples = Vec::new();
        let mut comments = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                comments.push(line.to_owned());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("value");
            let value: f64 = value.parse().expect("number");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), Vec::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    (name.to_owned(), parse_labels(body))
                }
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        (samples, comments)
    }

    fn parse_labels(mut body: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        while !body.is_empty() {
            let (name, rest) = body.split_once("=\"").expect("label name");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("closing quote") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("escape") {
                        (_, '\\') => value.push('\\'),
                        (_, '"') => value.push('"'),
                        (_, 'n') => value.push('\n'),
                        (_, c) => panic!("bad escape \\{c}"),
                    },
                    (_, '\n') => panic!("raw newline in label value"),
                    (_, c) => value.push(c),
                }
            };
            labels.push((name.to_owned(), value));
            body = rest[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&rest[end + 1..]);
        }
        labels
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map(|s| s.value)
    }

    #[test]
    fn empty_registry_renders_every_metric_with_help_and_type() {
        let (samples, comments) = parse(&Metrics::default().render());
        for (name, kind) in [
            ("quoalise_upstream_calls_total", "counter"),
            ("quoalise_quota_waits_total", "counter"),
            ("quoalise_quota_wait_seconds_total", "counter"),
            ("quoalise_notifications_sent_total", "counter"),
            ("quoalise_outbox_dropped_total", "counter"),
            ("quoalise_outbox_pending", "gauge"),
            ("quoalise_outbox_oldest_age_seconds", "gauge"),
            ("quoalise_subscriptions", "gauge"),
            ("quoalise_consents_active", "gauge"),
            ("quoalise_audit_anchor", "gauge"),
            ("quoalise_xmpp_connected", "gauge"),
            ("quoalise_xmpp_reconnects_total", "counter"),
            ("quoalise_xmpp_stalls_total", "counter"),
            ("quoalise_healthy", "gauge"),
            ("quoalise_stanzas_refused_total", "counter"),
            ("quoalise_requests_limited_total", "counter"),
            ("quoalise_ingest_requests_total", "counter"),
            ("quoalise_ingest_records_total", "counter"),
        ] {
            assert!(
                comments.contains(&format!("# TYPE {name} {kind}")),
                "{name}"
            );
            assert!(
                comments
                    .iter()
                    .any(|c| c.starts_with(&format!("# HELP {name} "))),
                "{name}"
            );
        }
        assert_eq!(value(&samples, "quoalise_xmpp_connected", &[]), Some(0.0));
        assert_eq!(value(&samples, "quoalise_subscriptions", &[]), Some(0.0));
        // Only the fixed-label counters have samples with labels when nothing was counted.
        assert!(samples.iter().all(|s| s.labels.is_empty()
            || s.name == "quoalise_stanzas_refused_total"
            || s.name == "quoalise_requests_limited_total"
            || s.name == "quoalise_healthy"));
    }

    #[test]
    fn ingest_requests_by_device_and_status() {
        let m = Metrics::default();
        m.ingest_request("home/pv-roof", 204, 100);
        m.ingest_request("home/pv-roof", 204, 100);
        m.ingest_request("home/pv-roof", 400, 0);
        let (samples, _) = parse(&m.render());
        let requests = |status| {
            value(
                &samples,
                "quoalise_ingest_requests_total",
                &[("device", "home/pv-roof"), ("status", status)],
            )
        };
        assert_eq!(requests("204"), Some(2.0));
        assert_eq!(requests("400"), Some(1.0));
        assert_eq!(
            value(
                &samples,
                "quoalise_ingest_records_total",
                &[("device", "home/pv-roof")]
            ),
            Some(200.0)
        );
    }

    #[test]
    fn link_defence_counters() {
        let m = Metrics::default();
        m.link_stalled();
        m.stanza_refused(true);
        m.stanza_refused(true);
        m.stanza_refused(false);
        m.request_limited(true);
        m.request_limited(false);
        m.request_limited(false);
        let (samples, _) = parse(&m.render());
        assert_eq!(
            value(&samples, "quoalise_xmpp_stalls_total", &[]),
            Some(1.0)
        );
        let refused = |r| value(&samples, "quoalise_stanzas_refused_total", &[("reason", r)]);
        assert_eq!((refused("depth"), refused("size")), (Some(2.0), Some(1.0)));
        let limited = |l| value(&samples, "quoalise_requests_limited_total", &[("limit", l)]);
        assert_eq!(
            (limited("in_flight"), limited("rate")),
            (Some(1.0), Some(2.0))
        );
    }

    #[test]
    fn counts_and_gauges() {
        let m = Metrics::default();
        let shared = m.clone();
        m.upstream_call("enedis_metering", "200");
        m.upstream_call("enedis_metering", "200");
        shared.upstream_call("enedis_metering", "429");
        m.upstream_call("enedis_token", "error");
        m.quota_wait("enedis_metering", Duration::from_millis(1500));
        m.quota_wait("enedis_metering", Duration::from_millis(250));
        m.notifications_sent(3);
        m.notifications_sent(4);
        m.outbox_dropped(5);
        shared.outbox_dropped(1);
        m.set_outbox_pending(40);
        m.set_outbox_pending(12);
        m.set_outbox_oldest_age(95);
        m.set_consents_active(3);
        m.set_audit_anchor(41, "ab12");
        m.set_audit_anchor(42, "cd34");
        m.set_subscriptions(12);
        m.set_subscriptions(10);
        m.set_connected(true);
        m.reconnected();
        m.reconnected();

        let (samples, _) = parse(&shared.render());
        let calls = "quoalise_upstream_calls_total";
        let api = |a| ("api", a);
        assert_eq!(
            value(
                &samples,
                calls,
                &[api("enedis_metering"), ("status", "200")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &samples,
                calls,
                &[api("enedis_metering"), ("status", "429")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&samples, calls, &[api("enedis_token"), ("status", "error")]),
            Some(1.0)
        );
        let waits = [api("enedis_metering")];
        assert_eq!(
            value(&samples, "quoalise_quota_waits_total", &waits),
            Some(2.0)
        );
        assert_eq!(
            value(&samples, "quoalise_quota_wait_seconds_total", &waits),
            Some(1.75)
        );
        assert_eq!(
            value(&samples, "quoalise_notifications_sent_total", &[]),
            Some(7.0)
        );
        assert_eq!(
            value(&samples, "quoalise_outbox_dropped_total", &[]),
            Some(6.0)
        );
        assert_eq!(value(&samples, "quoalise_outbox_pending", &[]), Some(12.0));
        assert_eq!(
            value(&samples, "quoalise_outbox_oldest_age_seconds", &[]),
            Some(95.0)
        );
        assert_eq!(value(&samples, "quoalise_consents_active", &[]), Some(3.0));
        // Only the last anchor is shown; its id is the value, its hash the label.
        assert_eq!(
            value(&samples, "quoalise_audit_anchor", &[("hash", "cd34")]),
            Some(42.0)
        );
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "quoalise_audit_anchor")
                .count(),
            1
        );
        assert_eq!(value(&samples, "quoalise_subscriptions", &[]), Some(10.0));
        assert_eq!(value(&samples, "quoalise_xmpp_connected", &[]), Some(1.0));
        assert_eq!(
            value(&samples, "quoalise_xmpp_reconnects_total", &[]),
            Some(2.0)
        );

        m.set_connected(false);
        let (samples, _) = parse(&m.render());
        assert_eq!(value(&samples, "quoalise_xmpp_connected", &[]), Some(0.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        let nasty = "a\"b\\c\nd} 1\n# TYPE x counter";
        m.upstream_call(nasty, "200");
        let text = m.render();
        assert!(
            text.contains(
                "quoalise_upstream_calls_total{api=\"a\\\"b\\\\c\\nd} 1\\n# TYPE x counter\",\
                 status=\"200\"} 1\n"
            ),
            "{text}"
        );
        let (samples, comments) = parse(&text);
        assert_eq!(
            value(
                &samples,
                "quoalise_upstream_calls_total",
                &[("api", nasty), ("status", "200")]
            ),
            Some(1.0)
        );
        assert!(!comments.contains(&"# TYPE x counter".to_owned()));
    }

    #[test]
    fn output_order_is_stable() {
        let a = Metrics::default();
        let b = Metrics::default();
        for (api, status) in [("z", "500"), ("a", "200"), ("m", "error"), ("a", "404")] {
            a.upstream_call(api, status);
        }
        for (api, status) in [("a", "404"), ("m", "error"), ("a", "200"), ("z", "500")] {
            b.upstream_call(api, status);
        }
        assert_eq!(a.render(), b.render());
        let (samples, _) = parse(&a.render());
        let order: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "quoalise_upstream_calls_total")
            .map(|s| format!("{}/{}", s.labels[0].1, s.labels[1].1))
            .collect();
        assert_eq!(order, ["a/200", "a/404", "m/error", "z/500"]);
    }

    #[test]
    fn label_sets_are_capped() {
        let m = Metrics::default();
        for i in 0..MAX_LABEL_SETS + 50 {
            m.upstream_call("api", &i.to_string());
            m.quota_wait(&format!("api{i}"), Duration::from_secs(1));
        }
        // Known label sets keep counting once the cap is reached.
        m.upstream_call("api", "0");
        let (samples, _) = parse(&m.render());
        let calls: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "quoalise_upstream_calls_total")
            .collect();
        assert_eq!(calls.len(), MAX_LABEL_SETS + 1);
        assert_eq!(
            calls.iter().map(|s| s.value).sum::<f64>(),
            (MAX_LABEL_SETS + 51) as f64
        );
        let overflow = [("api", OVERFLOW), ("status", OVERFLOW)];
        assert_eq!(
            value(&samples, "quoalise_upstream_calls_total", &overflow),
            Some(50.0)
        );
        assert_eq!(
            value(
                &samples,
                "quoalise_upstream_calls_total",
                &[("api", "api"), ("status", "0")]
            ),
            Some(2.0)
        );
        let waits = samples
            .iter()
            .filter(|s| s.name == "quoalise_quota_waits_total")
            .count();
        assert_eq!(waits, MAX_LABEL_SETS + 1);
        assert_eq!(
            value(
                &samples,
                "quoalise_quota_wait_seconds_total",
                &[("api", OVERFLOW)]
            ),
            Some(50.0)
        );
    }

    #[test]
    fn concurrent_updates_are_all_counted() {
        let m = Metrics::default();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.upstream_call("api", "200");
                        m.notifications_sent(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (samples, _) = parse(&m.render());
        assert_eq!(
            value(
                &samples,
                "quoalise_upstream_calls_total",
                &[("api", "api"), ("status", "200")]
            ),
            Some(4000.0)
        );
        assert_eq!(
            value(&samples, "quoalise_notifications_sent_total", &[]),
            Some(4000.0)
        );
    }

    #[test]
    fn output_ends_with_a_line_feed() {
        // The format requires every line, the last one included, to end with a line feed.
        assert!(Metrics::default().render().ends_with('\n'));
    }
}
