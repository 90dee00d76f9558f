//! The component's configuration file (`component.toml`).
//!
//! Every key is documented in `component.toml.example`, which `print-default-config` prints and a
//! test parses. Unknown keys are errors (`deny_unknown_fields`) so that a typo in an admin's file
//! is reported with its key name instead of being silently ignored.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::source::SourceConfig;

/// The example configuration shipped with the binary.
pub const EXAMPLE: &str = include_str!("../component.toml.example");

/// Environment variable that overrides `[xmpp] secret` / `secret_file`.
pub const SECRET_ENV: &str = "QUOALISE_XMPP_SECRET";

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
    pub fn expose(&self) -> &str {
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
pub struct Config {
    pub xmpp: XmppConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub pubsub: PubSubConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// Published items kept per node (for item retrieval and the last item on subscribe).
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// Notifications waiting per subscription at most (link down or slow); beyond it the oldest
    /// are dropped and the subscriber gets one notice that it missed items.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// `/healthz` says delivery lags when a notification has waited longer than this.
    #[serde(default = "default_outbox_alert")]
    pub outbox_alert: HumanDuration,
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
pub struct XmppConfig {
    /// The component's domain, e.g. `quoalise.example.org`.
    pub domain: String,
    /// The XMPP server's XEP-0114 listener, `host:port`.
    pub server: String,
    /// Shared secret, inline (prefer `secret_file` or the environment).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// File holding the shared secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Where keepalive pings go; defaults to the parent domain of `domain`.
    #[serde(default)]
    pub ping_target: Option<String>,
    /// Interval between keepalive pings (at most 25 s).
    #[serde(default = "default_ping_interval")]
    pub ping_interval: HumanDuration,
    /// Upper bound of the reconnect backoff.
    #[serde(default = "default_max_backoff")]
    pub reconnect_max_delay: HumanDuration,
    /// Largest stanza the server accepts from the component, in bytes (Prosody: 512 KiB).
    #[serde(default = "default_max_stanza_size")]
    pub max_stanza_size: usize,
    /// Notifications sent per second at most, so a large fan-out cannot flood the server.
    #[serde(default = "default_delivery_rate")]
    pub delivery_rate: u32,
    /// Deepest inbound stanza accepted; deeper ones are refused before any tree is built.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// A session with something to write that wrote nothing for this long is torn down and
    /// reconnected (the server stopped reading us).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: HumanDuration,
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
pub struct StoreConfig {
    /// `sqlite:///path/to/file.db`, `sqlite::memory:` or `postgres://user@host:port/db`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite:///var/lib/quoalise-component/quoalise.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve `/healthz` and `/metrics` even without an `enedis` source (which always needs the
    /// web server for its consent pages).
    pub enabled: bool,
    pub bind: String,
    pub public_url: String,
    /// Connections served at once; more are closed at once, so the XMPP link and the store
    /// always have file descriptors left.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and an idle kept-alive connection lives).
    pub header_timeout: HumanDuration,
    /// Time a connection may stay open, whatever it does (slow bodies, long keep-alive).
    pub connection_timeout: HumanDuration,
    /// Largest request body accepted on any route, in bytes.
    pub max_body: usize,
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
    pub admins: Vec<String>,
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

/// The checked configuration: what the rest of the program works with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub domain: BareJid,
    pub server: String,
    pub secret: Secret,
    pub ping_target: String,
    pub admins: Vec<BareJid>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Checks values that the types alone cannot and resolves the secret.
    ///
    /// `env_secret` is the value of `QUOALISE_XMPP_SECRET`, passed in so tests need not touch the
    /// process environment.
    pub fn validate(mut self, env_secret: Option<String>) -> Result<Settings, ConfigError> {
        let domain = BareJid::from_str(&self.xmpp.domain)
            .ok()
            .filter(|j| j.node().is_none())
            .ok_or_else(|| ConfigError::invalid("xmpp.domain", "must be a bare domain name"))?;
        if self.xmpp.server.parse::<SocketAddr>().is_err() && !self.xmpp.server.contains(':') {
            return Err(ConfigError::invalid(
                "xmpp.server",
                "must be host:port of the XEP-0114 listener",
            ));
        }
        let secret = resolve_secret(&self.xmpp, env_secret)?;
        let ping = self.xmpp.ping_interval.0;
        if ping.is_zero() || ping > std::time::Duration::from_secs(25) {
            return Err(ConfigError::invalid(
                "xmpp.ping_interval",
                "must be between 1s and 25s",
            ));
        }
        if self.xmpp.max_stanza_size < 16 * 1024 {
            return Err(ConfigError::invalid(
                "xmpp.max_stanza_size",
                "must be at least 16384 bytes",
            ));
        }
        if self.xmpp.delivery_rate == 0 {
            return Err(ConfigError::invalid(
                "xmpp.delivery_rate",
                "must be at least 1 stanza per second",
            ));
        }
        if !(8..=1024).contains(&self.xmpp.max_depth) {
            return Err(ConfigError::invalid(
                "xmpp.max_depth",
                "must be between 8 and 1024",
            ));
        }
        if self.xmpp.stall_timeout.0 < std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "xmpp.stall_timeout",
                "must be at least 1s",
            ));
        }
        self.limits.validate()?;
        if self.pubsub.max_pending == 0 {
            return Err(ConfigError::invalid(
                "pubsub.max_pending",
                "must be at least 1",
            ));
        }
        if self.pubsub.max_items == 0 || self.pubsub.max_items > 10_000 {
            return Err(ConfigError::invalid(
                "pubsub.max_items",
                "must be between 1 and 10000",
            ));
        }
        let ping_target = match &self.xmpp.ping_target {
            Some(t) => t.clone(),
            None => parent_domain(domain.domain().as_str()),
        };
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return Err(ConfigError::invalid(
                "store.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if !(1..=65_536).contains(&self.web.max_connections) {
            return Err(ConfigError::invalid(
                "web.max_connections",
                "must be between 1 and 65536",
            ));
        }
        if self.web.header_timeout.0.is_zero() {
            return Err(ConfigError::invalid(
                "web.header_timeout",
                "must be at least 1s",
            ));
        }
        if self.web.connection_timeout.0 < self.web.header_timeout.0 {
            return Err(ConfigError::invalid(
                "web.connection_timeout",
                "must be at least web.header_timeout",
            ));
        }
        if self.web.bind.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid("web.bind", "must be ip:port"));
        }
        if !(self.web.public_url.starts_with("https://")
            || self.web.public_url.starts_with("http://"))
        {
            return Err(ConfigError::invalid(
                "web.public_url",
                "must be an http(s) URL",
            ));
        }
        let admins = self
            .access
            .admins
            .iter()
            .enumerate()
            .map(|(i, a)| parse_bare_jid(a, &format!("access.admins[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, g) in self.access.grants.iter().enumerate() {
            let key = format!("access.grant[{i}]");
            parse_bare_jid(&g.jid, &format!("{key}.jid"))?;
            if g.usage_points.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.usage_points"),
                    "must list usage-point ids or \"*\"",
                ));
            }
            if g.series.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.series"),
                    "must list series paths or \"*\"",
                ));
            }
            if let Some(until) = &g.valid_until {
                chrono::DateTime::parse_from_rfc3339(until).map_err(|e| {
                    ConfigError::invalid(format!("{key}.valid_until"), format!("{e}"))
                })?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            s.validate(&format!("source[{i}]"))?;
            if !seen.insert(s.id().to_owned()) {
                return Err(ConfigError::invalid(
                    format!("source[{i}].id"),
                    format!("duplicate source id {:?}", s.id()),
                ));
            }
        }
        Ok(Settings {
            domain,
            server: self.xmpp.server.clone(),
            secret,
            ping_target,
            admins,
            config: self,
        })
    }
}

fn resolve_secret(xmpp: &XmppConfig, env_secret: Option<String>) -> Result<Secret, ConfigError> {
    SecretKeys {
        inline: "xmpp.secret",
        file: "xmpp.secret_file",
        env: SECRET_ENV,
    }
    .resolve(
        xmpp.secret.as_ref(),
        xmpp.secret_file.as_deref(),
        env_secret,
    )
}

/// Where a required secret may come from: an inline key, a file key, an environment variable.
/// The key names are the full paths used in error messages (`source[0].client_secret`).
pub(crate) struct SecretKeys<'a> {
    pub inline: &'a str,
    pub file: &'a str,
    pub env: &'a str,
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

/// `quoalise.example.org` → `example.org`; a single-label domain is its own parent.
impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

fn parent_domain(domain: &str) -> String {
    match domain.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
        _ => domain.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[xmpp]
domain = "quoalise.localhost"
server = "127.0.0.1:5347"
secret = "s3cret"
"#;

    #[test]
    fn example_parses_and_validates() {
        let config = Config::parse(EXAMPLE).expect("example parses");
        let settings = config.validate(None).expect("example validates");
        assert_eq!(settings.domain.to_string(), "quoalise.localhost");
        assert_eq!(settings.ping_target, "localhost");
        assert!(!settings.config.sources.is_empty());
        assert!(!settings.config.access.grants.is_empty());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let s = Config::parse(MINIMAL).unwrap().validate(None).unwrap();
        assert_eq!(s.config.xmpp.ping_interval.0.as_secs(), 20);
        assert_eq!(s.config.xmpp.max_stanza_size, 512 * 1024);
        assert!(s.config.store.url.starts_with("sqlite:"));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\nsecrte = 1\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("secrte"), "{err}");
    }

    #[test]
    fn missing_secret_is_named() {
        let text = MINIMAL.replace("secret = \"s3cret\"", "");
        let err = Config::parse(&text)
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("xmpp.secret"), "{err}");
    }

    #[test]
    fn env_secret_wins_and_is_not_printed() {
        let s = Config::parse(MINIMAL)
            .unwrap()
            .validate(Some("from-env".into()))
            .unwrap();
        assert_eq!(s.secret.expose(), "from-env");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("from-env") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "secret = \"s3cret\"",
            &format!("secret_file = {:?}", path.display().to_string()),
        );
        let s = Config::parse(&text).unwrap().validate(None).unwrap();
        assert_eq!(s.secret.expose(), "from-file");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "domain = \"quoalise.localhost\"",
                "domain = \"a@b\"",
                "xmpp.domain",
            ),
            (
                "server = \"127.0.0.1:5347\"",
                "server = \"nowhere\"",
                "xmpp.server",
            ),
        ];
        for (from, to, key) in cases {
            let text = MINIMAL.replace(from, to);
            let err = Config::parse(&text)
                .unwrap()
                .validate(None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{err}");
        }
        let text = format!("{MINIMAL}\n[access]\nadmins = [\"not a jid@@\"]\n");
        let err = Config::parse(&text)
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("access.admins[0]"), "{err}");
        let text = format!("{MINIMAL}\n[xmpp.extra]\n");
        assert!(Config::parse(&text).is_err());
    }

    #[test]
    fn duplicate_source_ids_are_refused() {
        let text = format!(
            "{MINIMAL}\n[[source]]\ntype = \"demo\"\nid = \"demo\"\n[[source]]\ntype = \"demo\"\nid = \"demo\"\n"
        );
        let err = Config::parse(&text)
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("source[1].id"), "{err}");
    }

    #[test]
    fn unknown_source_type_is_named() {
        let text = format!("{MINIMAL}\n[[source]]\ntype = \"bogus\"\nid = \"x\"\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
