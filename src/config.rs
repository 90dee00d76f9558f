//! The values of the configuration file (`component.toml`) that every layer reads: the sections
//! (`[xmpp]`, `[store]`, `[web]`, `[access]`, `[pubsub]`, `[limits]`, `[log]`) and the types keys
//! are written in (durations, secrets, JIDs), with the configuration error naming a key.
//!
//! The file as a whole (its root, the sources' sections, the checks across sections) is
//! `crate::settings`, above the sources; this module is below them, so that a source's own
//! section can use these types without a cycle. Unknown keys are errors
//! (`deny_unknown_fields`) so that a typo in an admin's file is reported with its key name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

/// A configuration that could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent to its counterpart.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A duration written the human way (`"2s"`, `"5m"`, `"1h 30m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PubSubConfig {
    /// Published items kept per node (for item retrieval and the last item on subscribe).
    #[serde(default = "default_max_items")]
    pub(crate) max_items: usize,
    /// Missed notifications a subscription receives at most (link down or slow): the newest;
    /// the oldest are skipped and the subscriber gets one notice that it missed items.
    #[serde(default = "default_max_pending")]
    pub(crate) max_pending: usize,
    /// `/healthz` says delivery lags when a notification has waited longer than this.
    #[serde(default = "default_outbox_alert")]
    pub(crate) outbox_alert: HumanDuration,
}

fn default_outbox_alert() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_items: default_max_items(),
            max_pending: default_max_pending(),
            outbox_alert: default_outbox_alert(),
        }
    }
}

fn default_max_pending() -> usize {
    1000
}

/// What one requester (a bare JID, all its resources together) may ask of the component.
/// Above a limit a request gets an immediate error, never a silent drop or a queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests of one requester being handled at once; more get `wait`/`resource-constraint`.
    #[serde(default = "default_requests_in_flight")]
    pub requests_in_flight: u32,
    /// Requests per second one requester may sustain; more get `wait`/`policy-violation`.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Requests one requester may send in a burst above the sustained rate.
    #[serde(default = "default_requests_burst")]
    pub requests_burst: u32,
    /// What a request that reads history (ad-hoc commands, PubSub items) costs, in requests.
    #[serde(default = "default_history_cost")]
    pub history_cost: u32,
    /// Ad-hoc command sessions one requester may hold open.
    #[serde(default = "default_sessions_per_requester")]
    pub sessions_per_requester: usize,
    /// Ad-hoc command sessions open at once, all requesters together.
    #[serde(default = "default_sessions_total")]
    pub sessions_total: usize,
    /// Subscriptions (PubSub and push) one requester may hold, all nodes together.
    #[serde(default = "default_subscriptions_per_requester")]
    pub subscriptions_per_requester: usize,
    /// Subscriptions one requester may hold on one node (one per resource it subscribes).
    #[serde(default = "default_subscriptions_per_node")]
    pub subscriptions_per_node: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_in_flight: default_requests_in_flight(),
            requests_per_second: default_requests_per_second(),
            requests_burst: default_requests_burst(),
            history_cost: default_history_cost(),
            sessions_per_requester: default_sessions_per_requester(),
            sessions_total: default_sessions_total(),
            subscriptions_per_requester: default_subscriptions_per_requester(),
            subscriptions_per_node: default_subscriptions_per_node(),
        }
    }
}

fn default_requests_in_flight() -> u32 {
    8
}
fn default_requests_per_second() -> u32 {
    50
}
fn default_requests_burst() -> u32 {
    200
}
fn default_history_cost() -> u32 {
    5
}
fn default_sessions_per_requester() -> usize {
    32
}
fn default_sessions_total() -> usize {
    10_000
}
fn default_subscriptions_per_requester() -> usize {
    1000
}
fn default_subscriptions_per_node() -> usize {
    16
}

fn default_max_items() -> usize {
    100
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct XmppConfig {
    /// The component's domain, e.g. `quoalise.example.org`.
    pub(crate) domain: String,
    /// The XMPP server's XEP-0114 listener, `host:port`.
    pub(crate) server: String,
    /// Shared secret, inline (prefer `secret_file` or the environment).
    #[serde(default)]
    pub(crate) secret: Option<Secret>,
    /// File holding the shared secret (trailing newline ignored).
    #[serde(default)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Where keepalive pings go; defaults to the parent domain of `domain`.
    #[serde(default)]
    pub(crate) ping_target: Option<String>,
    /// Interval between keepalive pings (at most 25 s).
    #[serde(default = "default_ping_interval")]
    pub(crate) ping_interval: HumanDuration,
    /// Upper bound of the reconnect backoff.
    #[serde(default = "default_max_backoff")]
    pub(crate) reconnect_max_delay: HumanDuration,
    /// Largest stanza the server accepts from the component, in bytes (Prosody: 512 KiB).
    #[serde(default = "default_max_stanza_size")]
    pub(crate) max_stanza_size: usize,
    /// Notifications sent per second at most, so a large fan-out cannot flood the server.
    #[serde(default = "default_delivery_rate")]
    pub(crate) delivery_rate: u32,
    /// Deepest inbound stanza accepted; deeper ones are refused before any tree is built.
    #[serde(default = "default_max_depth")]
    pub(crate) max_depth: usize,
    /// A session with something to write that wrote nothing for this long is torn down and
    /// reconnected (the server stopped reading us).
    #[serde(default = "default_stall_timeout")]
    pub(crate) stall_timeout: HumanDuration,
}

fn default_max_depth() -> usize {
    64
}

fn default_stall_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_delivery_rate() -> u32 {
    2000
}

fn default_ping_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(20))
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

fn default_max_stanza_size() -> usize {
    512 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// `sqlite:///path/to/file.db`, `sqlite::memory:` or `postgres://user@host:port/db`.
    pub(crate) url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite:///var/lib/quoalise-component/quoalise.db".into(),
        }
    }
}

/// `[cluster]`: what lets several instances share one PostgreSQL store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClusterConfig {
    /// This instance's name in leases and logs; empty: `<hostname>-<pid>-<random>`, new at each
    /// start (a restarted instance is a new holder).
    pub(crate) instance: String,
    /// How soon after an instance dies (or loses the database) another one takes its sources
    /// over. The lease lasts three quarters of it, renewed every quarter; a standby retries every
    /// quarter.
    pub(crate) takeover: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            instance: String::new(),
            takeover: HumanDuration(std::time::Duration::from_secs(30)),
        }
    }
}

/// A retention period written as an ISO 8601 duration (`"P3Y"`, `"P30D"`; see
/// [`crate::time::duration::parse_period`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub std::time::Duration);

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::time::duration::parse_period(&text)
            .map(Period)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid period {text:?}: write an ISO 8601 duration of whole years, \
                     months, weeks or days, such as \"P3Y\" or \"P30D\""
                ))
            })
    }
}

/// `[audit]`: how long the audit log is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuditConfig {
    /// Entries older than this are pruned (hourly), a checkpoint entry vouching for the cut;
    /// unset: kept for ever.
    pub(crate) keep: Option<Period>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WebConfig {
    /// Serve `/healthz` and `/metrics` even without an `enedis` source (which always needs the
    /// web server for its consent pages).
    pub(crate) enabled: bool,
    pub(crate) bind: String,
    pub(crate) public_url: String,
    /// Connections served at once; more are closed at once, so the XMPP link and the store
    /// always have file descriptors left.
    pub(crate) max_connections: usize,
    /// Time a client has to send a request's headers (and an idle kept-alive connection lives).
    pub(crate) header_timeout: HumanDuration,
    /// Time a connection may stay open, whatever it does (slow bodies, long keep-alive).
    pub(crate) connection_timeout: HumanDuration,
    /// Largest request body accepted on any route, in bytes.
    pub(crate) max_body: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: false,
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            max_connections: 4096,
            header_timeout: HumanDuration(std::time::Duration::from_secs(10)),
            connection_timeout: HumanDuration(std::time::Duration::from_secs(60)),
            max_body: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Bare JIDs that see every usage point and may run admin commands.
    #[serde(default)]
    pub(crate) admins: Vec<String>,
    #[serde(default, rename = "grant")]
    pub grants: Vec<GrantConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// Bare JID of the grantee.
    pub jid: String,
    /// Usage-point ids, or `"*"` for all of them.
    pub usage_points: Vec<String>,
    /// Series paths (`consumption/power/active/raw`), or `"*"` (default) for all.
    #[serde(default = "all_series")]
    pub series: Vec<String>,
    /// Why the access is given (shown to admins and kept in the audit log).
    #[serde(default)]
    pub purpose: Option<String>,
    /// End of validity, RFC 3339 (`2027-01-01T00:00:00Z`); none = no expiry.
    #[serde(default)]
    pub valid_until: Option<String>,
}

fn all_series() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `quoalise_component=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// Where a required secret may come from: an inline key, a file key, an environment variable.
/// The key names are the full paths used in error messages (`source[0].client_secret`).
pub(crate) struct SecretKeys<'a> {
    pub(crate) inline: &'a str,
    pub(crate) file: &'a str,
    pub(crate) env: &'a str,
}

impl SecretKeys<'_> {
    /// The secret, which must be given one way; `env_value` is the variable's value, passed in
    /// so that tests need not touch the process environment.
    pub(crate) fn resolve(
        &self,
        inline: Option<&Secret>,
        file: Option<&Path>,
        env_value: Option<String>,
    ) -> Result<Secret, ConfigError> {
        secret_from((inline, self.inline), (file, self.file), env_value)?.ok_or_else(|| {
            ConfigError::invalid(
                self.inline,
                format!(
                    "missing: set {}, {} or the {} environment variable",
                    leaf(self.inline),
                    leaf(self.file),
                    self.env
                ),
            )
        })
    }
}

/// The last component of a key path: `xmpp.secret` → `secret`.
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// A secret given inline, in a file (trailing newline ignored) or by an environment variable,
/// which wins when set and non-empty; `None` when none of them is. Setting both the inline key
/// and the file is an error named after the inline key. Shared by every secret of the config so
/// that they all behave alike.
pub(crate) fn secret_from(
    (inline, inline_key): (Option<&Secret>, &str),
    (file, file_key): (Option<&Path>, &str),
    env: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return Ok(Some(Secret(value)));
    }
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            inline_key,
            format!("set either {inline_key} or {file_key}, not both"),
        )),
        (Some(s), None) if !s.0.is_empty() => Ok(Some(s.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(file_key, format!("cannot read {}: {e}", path.display()))
            })?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(ConfigError::invalid(file_key, "file is empty"));
            }
            Ok(Some(Secret(trimmed.to_owned())))
        }
        _ => Ok(None),
    }
}

pub(crate) fn parse_bare_jid(text: &str, key: &str) -> Result<BareJid, ConfigError> {
    BareJid::from_str(text)
        .map_err(|e| ConfigError::invalid(key, format!("invalid JID {text:?}: {e}")))
}

impl LimitsConfig {
    /// Every limit positive, and a history request affordable within the burst.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "limits.requests_in_flight",
                self.requests_in_flight as usize,
            ),
            (
                "limits.requests_per_second",
                self.requests_per_second as usize,
            ),
            ("limits.requests_burst", self.requests_burst as usize),
            ("limits.history_cost", self.history_cost as usize),
            ("limits.sessions_per_requester", self.sessions_per_requester),
            ("limits.sessions_total", self.sessions_total),
            (
                "limits.subscriptions_per_requester",
                self.subscriptions_per_requester,
            ),
            ("limits.subscriptions_per_node", self.subscriptions_per_node),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::invalid(*key, "must be at least 1"));
        }
        if self.history_cost > self.requests_burst {
            return Err(ConfigError::invalid(
                "limits.history_cost",
                "must not exceed limits.requests_burst (such a request could never run)",
            ));
        }
        Ok(())
    }
}
