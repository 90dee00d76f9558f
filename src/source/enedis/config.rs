//! The `[[source]] type = "enedis"` table.

use std::num::NonZeroU32;
use std::path::PathBuf;

use chrono::NaiveTime;
use serde::Deserialize;

use crate::config::{ConfigError, HumanDuration, Secret, SecretKeys};
use crate::source::SourceInfo;

/// Environment variable that overrides `client_secret` / `client_secret_file`.
pub(crate) const CLIENT_SECRET_ENV: &str = "QUOALISE_ENEDIS_CLIENT_SECRET";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnedisConfig {
    pub(crate) id: String,
    /// Base URL of the APIs: the token, `mesure_synchrone_auto`, `subscribed_services` paths live
    /// under it.
    #[serde(default = "default_api_url")]
    pub(crate) api_url: String,
    /// The customer's consent page at Enedis (authorize v2).
    #[serde(default = "default_authorize_url")]
    pub(crate) authorize_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Europe/Paris time of the daily fetch of D-1 for consented usage points.
    #[serde(default = "default_poll_time")]
    pub(crate) poll_time: String,
    /// Delay between two attempts of the daily fetch when D-1 is not available yet.
    #[serde(default = "default_poll_retry")]
    pub(crate) poll_retry: HumanDuration,
    /// Attempts of the daily fetch, the first included.
    #[serde(default = "default_poll_attempts")]
    pub(crate) poll_attempts: u32,
    /// Enedis' quotas, per API.
    #[serde(default = "default_per_second")]
    pub(crate) requests_per_second: NonZeroU32,
    #[serde(default = "default_per_hour")]
    pub(crate) requests_per_hour: NonZeroU32,
    /// Longest a request waits for the quota before it is refused with `resource-constraint`.
    #[serde(default = "default_max_quota_wait")]
    pub(crate) max_quota_wait: HumanDuration,
    /// Timeout of one HTTP call.
    #[serde(default = "default_request_timeout")]
    pub(crate) request_timeout: HumanDuration,
    /// How long the link behind a consent page button stays usable.
    #[serde(default = "default_consent_link_lifetime")]
    pub(crate) consent_link_lifetime: HumanDuration,
    /// Most consent pages one application may keep.
    #[serde(default = "default_max_consent_pages")]
    pub(crate) max_consent_pages: u32,
    #[serde(default = "default_title")]
    pub(crate) title: String,
    #[serde(default = "default_description")]
    pub(crate) description: String,
}

fn default_api_url() -> String {
    "https://gw.ext.prod.api.enedis.fr".into()
}

fn default_authorize_url() -> String {
    "https://mon-compte-particulier.enedis.fr/dataconnect/v2/oauth2/authorize".into()
}

fn default_poll_time() -> String {
    "08:30".into()
}

fn default_poll_retry() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2 * 3600))
}

fn default_poll_attempts() -> u32 {
    5
}

fn default_per_second() -> NonZeroU32 {
    NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)
}

fn default_per_hour() -> NonZeroU32 {
    NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN)
}

fn default_max_quota_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_consent_link_lifetime() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

fn default_max_consent_pages() -> u32 {
    100
}

fn default_title() -> String {
    "Enedis Data Connect".into()
}

fn default_description() -> String {
    "Linky meters whose customers consented, through Enedis Data Connect".into()
}

impl EnedisConfig {
    pub(crate) fn info(&self) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            kind: "enedis".into(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }

    /// The client secret: `QUOALISE_ENEDIS_CLIENT_SECRET`, else `client_secret_file`, else
    /// `client_secret`. `key` is the table's path (`source[0]`).
    pub(crate) fn client_secret(
        &self,
        key: &str,
        env: Option<String>,
    ) -> Result<Secret, ConfigError> {
        SecretKeys {
            inline: &format!("{key}.client_secret"),
            file: &format!("{key}.client_secret_file"),
            env: CLIENT_SECRET_ENV,
        }
        .resolve(
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            env,
        )
    }

    /// `poll_time` as a time of day.
    pub(crate) fn poll_time(&self) -> Option<NaiveTime> {
        NaiveTime::parse_from_str(self.poll_time.trim(), "%H:%M").ok()
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| {
            Err(ConfigError::invalid(format!("{key}.{field}"), message))
        };
        for (field, url) in [
            ("api_url", &self.api_url),
            ("authorize_url", &self.authorize_url),
        ] {
            if reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .is_none()
            {
                return invalid(field, "must be an absolute http(s) URL");
            }
        }
        if self.client_id.trim().is_empty() {
            return invalid("client_id", "must not be empty");
        }
        self.client_secret(key, std::env::var(CLIENT_SECRET_ENV).ok())?;
        if self.poll_time().is_none() {
            return invalid("poll_time", "must be HH:MM (Europe/Paris)");
        }
        if self.poll_attempts == 0 {
            return invalid("poll_attempts", "must be at least 1");
        }
        if self.poll_retry.0.as_secs() < 60 {
            return invalid("poll_retry", "must be at least 1m");
        }
        if self.requests_per_second.get() > 1000 || self.requests_per_hour.get() > 3_600_000 {
            return invalid("requests_per_second", "is beyond any Enedis quota");
        }
        if self.request_timeout.0.is_zero() {
            return invalid("request_timeout", "must be positive");
        }
        if self.consent_link_lifetime.0.as_secs() < 60 {
            return invalid("consent_link_lifetime", "must be at least 1m");
        }
        if self.max_consent_pages == 0 {
            return invalid("max_consent_pages", "must be at least 1");
        }
        Ok(())
    }
}
