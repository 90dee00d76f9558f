//! The `[[source]] type = "http"` table: the devices that may post readings, their tokens and
//! series, who owns them, and what one device may send.
//!
//! Checked once when the whole config is (`Config::validate` calls [`HttpConfig::validate`]):
//! token files and variables are read there, so a missing token stops the start with an error
//! naming its key. The result, [`HttpSettings`], is what the source and the ingest route run
//! with.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::series::measurement;
use crate::config::{parse_bare_jid, secret_from, ConfigError, HumanDuration, Secret};
use crate::model::{Identifier, Measurement, Series, UsagePoint};
use crate::source::SourceInfo;

/// Shortest token accepted: a token is all that stands between the Internet and the history.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub(crate) id: String,
    /// Bare JIDs granted every series of every device of this source.
    #[serde(default)]
    pub(crate) owners: Vec<String>,
    /// Readings older than this are refused (by record): the series keep no more.
    #[serde(default = "default_retention")]
    pub(crate) retention: HumanDuration,
    /// Requests per second one device may sustain, and the burst above it; more get 429.
    #[serde(default = "default_requests_per_second")]
    pub(crate) requests_per_second: u32,
    #[serde(default = "default_requests_burst")]
    pub(crate) requests_burst: u32,
    #[serde(default)]
    pub(crate) device: Vec<DeviceConfig>,
    #[serde(default = "default_title")]
    pub(crate) title: String,
    #[serde(default = "default_description")]
    pub(crate) description: String,
    /// What [`HttpConfig::validate`] made of the table.
    #[serde(skip)]
    validated: Option<HttpSettings>,
}

/// One `[[source.device]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The usage point's id, and the localpart of its JID.
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// `electricity-meter`, `thermometer`, … (shown in discovery and in every payload).
    #[serde(default = "default_device_type")]
    pub(crate) device_type: String,
    /// The bearer token, inline (prefer `token_file` or `token_env`).
    #[serde(default)]
    pub(crate) token: Option<Secret>,
    /// File holding the token (trailing newline ignored).
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    /// Name of an environment variable holding the token (wins over the other two).
    #[serde(default)]
    pub(crate) token_env: Option<String>,
    /// Series paths the device may post, e.g. `production/power/active/instant`.
    pub(crate) series: Vec<String>,
}

fn default_retention() -> HumanDuration {
    HumanDuration(Duration::from_secs(3 * 365 * 86_400))
}

fn default_requests_per_second() -> u32 {
    10
}

fn default_requests_burst() -> u32 {
    20
}

fn default_device_type() -> String {
    "electricity-meter".into()
}

fn default_title() -> String {
    "HTTP ingest".into()
}

fn default_description() -> String {
    "Meters and gateways posting SenML readings over HTTP".into()
}

/// A validated table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpSettings {
    pub(crate) id: String,
    pub(crate) owners: Vec<String>,
    pub(crate) retention: Duration,
    pub(crate) requests_per_second: NonZeroU32,
    pub(crate) requests_burst: NonZeroU32,
    pub(crate) devices: Vec<Device>,
}

/// A validated device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) device_type: String,
    /// Its `Debug` does not print it.
    pub(crate) token: Secret,
    /// Declared series, in the table's order, with what they measure.
    pub(crate) series: Vec<(String, Measurement)>,
}

impl Device {
    /// The usage point the device is, in source `source`.
    pub(crate) fn usage_point(&self, source: &str) -> UsagePoint {
        UsagePoint {
            id: self.id.clone(),
            source: source.to_owned(),
            device_type: self.device_type.clone(),
            identifier: Identifier {
                authority: source.to_owned(),
                kind: "http".into(),
                value: self.id.clone(),
            },
            name: self.name.clone(),
            online: true,
        }
    }

    /// Its series as the store declares them.
    pub(crate) fn series_models(&self) -> Vec<Series> {
        self.series
            .iter()
            .map(|(path, m)| Series {
                usage_point: self.id.clone(),
                path: path.clone(),
                title: format!("{} ({})", m.name, m.aggregation),
                measurement: m.clone(),
            })
            .collect()
    }
}

impl HttpConfig {
    pub(crate) fn info(&self) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            kind: "http".into(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }

    /// Checks the table and reads the tokens, keeping the result for
    /// [`HttpConfig::into_settings`]. `key` is the table's path (`source[0]`).
    pub(crate) fn validate(&mut self, key: &str) -> Result<(), ConfigError> {
        self.validated = Some(self.settings(key, |name| std::env::var(name).ok())?);
        Ok(())
    }

    /// The result of [`HttpConfig::validate`], or the same checks now.
    pub(crate) fn into_settings(self, key: &str) -> Result<HttpSettings, ConfigError> {
        match self.validated {
            Some(settings) => Ok(settings),
            None => self.settings(key, |name| std::env::var(name).ok()),
        }
    }

    /// Every check of the table; `env` reads an environment variable (a parameter, so that
    /// tests need not touch the process environment).
    fn settings(
        &self,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<HttpSettings, ConfigError> {
        for (i, owner) in self.owners.iter().enumerate() {
            parse_bare_jid(owner, &format!("{key}.owners[{i}]"))?;
        }
        let positive = |name: &str, v: u32| {
            NonZeroU32::new(v)
                .ok_or_else(|| ConfigError::invalid(format!("{key}.{name}"), "must be at least 1"))
        };
        let requests_per_second = positive("requests_per_second", self.requests_per_second)?;
        let requests_burst = positive("requests_burst", self.requests_burst)?;
        if self.retention.0 < Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                format!("{key}.retention"),
                "must be at least 1h",
            ));
        }
        if self.device.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.device"),
                "declare at least one [[source.device]]",
            ));
        }
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        let mut devices = Vec::with_capacity(self.device.len());
        for (i, d) in self.device.iter().enumerate() {
            let key = format!("{key}.device[{i}]");
            if !crate::model::is_valid_usage_point_id(&d.id) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    "must be a JID localpart of letters, digits, '-', '_' or '.'",
                ));
            }
            if !ids.insert(d.id.clone()) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    format!("duplicate device id {:?}", d.id),
                ));
            }
            let token = d.token(&key, &env)?;
            if !tokens.insert(token.expose().to_owned()) {
                return Err(ConfigError::invalid(
                    format!("{key}.token"),
                    "two devices share this token: each device needs its own",
                ));
            }
            if d.series.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.series"),
                    "list the series paths the device posts",
                ));
            }
            let mut series = Vec::with_capacity(d.series.len());
            for (j, path) in d.series.iter().enumerate() {
                let m = measurement(path)
                    .map_err(|e| ConfigError::invalid(format!("{key}.series[{j}]"), e))?;
                if series.iter().any(|(p, _)| p == path) {
                    return Err(ConfigError::invalid(
                        format!("{key}.series[{j}]"),
                        format!("series {path:?} listed twice"),
                    ));
                }
                series.push((path.clone(), m));
            }
            devices.push(Device {
                id: d.id.clone(),
                name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                device_type: d.device_type.clone(),
                token,
                series,
            });
        }
        Ok(HttpSettings {
            id: self.id.clone(),
            owners: self.owners.clone(),
            retention: self.retention.0,
            requests_per_second,
            requests_burst,
            devices,
        })
    }
}

impl DeviceConfig {
    /// The token: from `token_env` when that variable is set and not empty, otherwise exactly
    /// one of `token` and `token_file`.
    fn token(
        &self,
        key: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        let from_env = self.token_env.as_deref().and_then(env);
        let token = secret_from(
            (self.token.as_ref(), &format!("{key}.token")),
            (self.token_file.as_deref(), &format!("{key}.token_file")),
            from_env,
        )?
        .ok_or_else(|| {
            let message = match &self.token_env {
                Some(name) => format!("missing: the variable {name} (token_env) is not set"),
                None => "missing: set token, token_file or token_env".into(),
            };
            ConfigError::invalid(format!("{key}.token"), message)
        })?;
        if token.expose().chars().count() < MIN_TOKEN_LEN
            || token
                .expose()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::invalid(
                format!("{key}.token"),
                format!("must be at least {MIN_TOKEN_LEN} characters, without spaces"),
            ));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> HttpConfig {
        toml::from_str(&format!(
            "id = \"home\"\nowners = [\"alice@example.org\"]\n{extra}"
        ))
        .unwrap()
    }

    const DEVICE: &str = "[[device]]\nid = \"pv-roof\"\nname = \"Roof\"\n\
         token = \"0123456789abcdef\"\nseries = [\"production/power/active/instant\"]\n";

    fn err(c: &HttpConfig) -> String {
        c.settings("source[0]", |_| None).unwrap_err().to_string()
    }

    #[test]
    fn a_device_becomes_a_usage_point_with_its_series() {
        let s = parse(DEVICE).settings("source[0]", |_| None).unwrap();
        assert_eq!(s.requests_per_second.get(), 10);
        let d = &s.devices[0];
        let up = d.usage_point("home");
        assert_eq!((up.id.as_str(), up.name.as_str()), ("pv-roof", "Roof"));
        assert_eq!(up.identifier.urn(), "urn:dev:http:pv-roof");
        let series = d.series_models();
        assert_eq!(series[0].path, "production/power/active/instant");
        assert_eq!(series[0].measurement.unit, "W");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        // The example file's spelling of the default.
        let three_years = parse(&format!("retention = \"3y\"\n{DEVICE}"))
            .settings("s", |_| None)
            .unwrap();
        assert!(three_years.retention >= s.retention);
    }

    #[test]
    fn tokens_come_from_the_environment_first() {
        let c =
            parse("[[device]]\nid = \"a\"\ntoken_env = \"TOK\"\nseries = [\"temperature/raw\"]\n");
        let s = c
            .settings("s", |name| {
                (name == "TOK").then(|| "from-the-env-0123".to_owned())
            })
            .unwrap();
        assert_eq!(s.devices[0].token.expose(), "from-the-env-0123");
        assert!(err(&c).contains("TOK"));
    }

    #[test]
    fn bad_tables_name_their_key() {
        for (extra, wanted) in [
            ("", "source[0].device: declare at least one"),
            (
                "[[device]]\nid = \"a b\"\ntoken = \"0123456789abcdef\"\nseries = [\"temperature/raw\"]\n",
                "source[0].device[0].id",
            ),
            (
                "[[device]]\nid = \"a\"\nseries = [\"temperature/raw\"]\n",
                "source[0].device[0].token: missing",
            ),
            (
                "[[device]]\nid = \"a\"\ntoken = \"short\"\nseries = [\"temperature/raw\"]\n",
                "at least 16 characters",
            ),
            (
                "[[device]]\nid = \"a\"\ntoken = \"0123456789abcdef\"\nseries = [\"water/raw\"]\n",
                "source[0].device[0].series[0]",
            ),
            (
                "[[device]]\nid = \"a\"\ntoken = \"0123456789abcdef\"\nseries = []\n",
                "source[0].device[0].series",
            ),
            (
                &format!("{DEVICE}{}", DEVICE.replace("pv-roof", "other")),
                "two devices share this token",
            ),
            (
                &format!("{DEVICE}{}", DEVICE.replace("0123", "9999")),
                "duplicate device id",
            ),
            (
                &format!("requests_per_second = 0\n{DEVICE}"),
                "source[0].requests_per_second",
            ),
            (&format!("retention = \"1m\"\n{DEVICE}"), "source[0].retention"),
        ] {
            let got = err(&parse(extra));
            assert!(got.contains(wanted), "{extra}: {got}");
        }
        let bad_owner: HttpConfig =
            toml::from_str(&format!("id = \"h\"\nowners = [\"@@\"]\n{DEVICE}")).unwrap();
        assert!(err(&bad_owner).contains("owners[0]"));
    }
}
