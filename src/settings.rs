//! The component's configuration file (`component.toml`) as a whole, and the settings checked
//! from it that the application runs with.
//!
//! Every key is documented in `component.toml.example`, which `print-default-config` prints and a
//! test parses. The sections every layer reads, and the types keys are written in, are in
//! `crate::config`; the sources' sections are their own (`crate::source`). This module holds them
//! together, so it sits above the sources.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::config::{
    parse_bare_jid, AccessConfig, AuditConfig, ClusterConfig, ConfigError, LimitsConfig, LogConfig,
    PubSubConfig, Secret, SecretKeys, StoreConfig, WebConfig, XmppConfig,
};
use crate::source::SourceConfig;

/// The example configuration shipped with the binary.
pub const EXAMPLE: &str = include_str!("../component.toml.example");

/// Environment variable that overrides `[xmpp] secret` / `secret_file`.
pub const SECRET_ENV: &str = "QUOALISE_XMPP_SECRET";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub(crate) xmpp: XmppConfig,
    #[serde(default)]
    pub(crate) store: StoreConfig,
    #[serde(default)]
    pub(crate) web: WebConfig,
    #[serde(default)]
    pub(crate) cluster: ClusterConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub(crate) pubsub: PubSubConfig,
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    #[serde(default)]
    pub(crate) audit: AuditConfig,
}

/// The checked configuration: what the rest of the program works with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub domain: BareJid,
    pub(crate) server: String,
    pub(crate) secret: Secret,
    pub(crate) ping_target: String,
    pub admins: Vec<BareJid>,
}

impl Config {
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
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
        let takeover = self.cluster.takeover.0;
        if takeover < std::time::Duration::from_secs(4)
            || takeover > std::time::Duration::from_secs(3600)
        {
            return Err(ConfigError::invalid(
                "cluster.takeover",
                "must be between 4s and 1h",
            ));
        }
        if self.cluster.instance.len() > 200 || self.cluster.instance.chars().any(char::is_control)
        {
            return Err(ConfigError::invalid(
                "cluster.instance",
                "must be at most 200 characters, none of them control characters",
            ));
        }
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

/// The server a component of `domain` connects to by default, its parent domain:
/// `quoalise.example.org` → `example.org`; a single-label domain is its own parent.
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
