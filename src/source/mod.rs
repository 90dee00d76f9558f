//! Data sources: long-running tasks that declare usage points and produce readings.
//!
//! A source never touches XMPP. It sends [`SourceEvent`]s on a channel; the publisher task
//! (`crate::publisher`) persists them. Each `[[source]]` table of the config becomes one source,
//! selected by its `type` key. The exception to "no SQL" is the `enedis` source, whose history
//! lives upstream: the store is its per-day cache, filled on demand ([`Upstream`]) before a
//! history request is answered.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};

use crate::config::ConfigError;
use crate::lease::Start;
use crate::metrics::Metrics;
use crate::model::{Batch, Series, UsagePoint};
use crate::store::Store;

pub mod demo;
pub mod enedis;
pub mod http;
pub mod xaal;

/// One `[[source]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Demo(demo::DemoConfig),
    Enedis(enedis::EnedisConfig),
    Xaal(xaal::XaalConfig),
    Http(http::HttpConfig),
}

impl SourceConfig {
    /// The source id: the localpart of its JID.
    pub(crate) fn id(&self) -> &str {
        match self {
            SourceConfig::Demo(c) => &c.id,
            SourceConfig::Enedis(c) => &c.id,
            SourceConfig::Xaal(c) => &c.id,
            SourceConfig::Http(c) => &c.id,
        }
    }

    /// What discovery says about the source.
    pub(crate) fn info(&self) -> SourceInfo {
        match self {
            SourceConfig::Demo(c) => c.info(),
            SourceConfig::Enedis(c) => c.info(),
            SourceConfig::Xaal(c) => c.info(),
            SourceConfig::Http(c) => c.info(),
        }
    }

    /// Checks the table; an `xaal` table keeps what it made of itself (its derived key) for
    /// [`SourceConfig::start`].
    pub(crate) fn validate(&mut self, key: &str) -> Result<(), ConfigError> {
        if !crate::model::is_valid_usage_point_id(self.id()) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.id"),
                message: "must be a JID localpart of letters, digits, '-', '_' or '.'".into(),
            });
        }
        match self {
            SourceConfig::Demo(c) => c.validate(key),
            SourceConfig::Enedis(c) => c.validate(key),
            SourceConfig::Xaal(c) => c.validate(key),
            SourceConfig::Http(c) => c.validate(key),
        }
    }

    /// Builds the source: how to start its task (which runs until the token given is cancelled
    /// or the receiver of `events` is gone; started again each time this instance becomes the
    /// source's leader, see `crate::lease`) and what it offers the rest of the component, on
    /// every instance. `key` is the table's path in the config (`source[0]`), for error messages.
    pub(crate) fn start(
        self,
        key: &str,
        deps: &SourceDeps,
        events: mpsc::Sender<SourceEvent>,
    ) -> Result<Running, ConfigError> {
        match self {
            SourceConfig::Demo(c) => Ok(Running::task(Box::new(move |token| {
                Box::pin(demo::run(c.clone(), events.clone(), token))
            }))),
            SourceConfig::Enedis(c) => {
                let secret =
                    c.client_secret(key, std::env::var(enedis::config::CLIENT_SECRET_ENV).ok())?;
                let service = Arc::new(
                    enedis::Enedis::new(
                        c,
                        secret,
                        deps.store.clone(),
                        deps.metrics.clone(),
                        events,
                        deps.access_changed.clone(),
                    )
                    .map_err(|e| ConfigError::invalid(key, e))?,
                );
                let task = service.clone();
                Ok(Running {
                    start: Box::new(move |token| Box::pin(task.clone().run(token))),
                    upstream: Some(service.clone()),
                    consent_pages: Some(ConsentPages {
                        max_per_app: service.config.max_consent_pages,
                    }),
                    enedis: Some(service),
                    ingest: None,
                })
            }
            SourceConfig::Xaal(c) => {
                let settings = c.into_settings(key)?;
                Ok(Running::task(Box::new(move |token| {
                    Box::pin(xaal::gateway::run(settings.clone(), events.clone(), token))
                })))
            }
            SourceConfig::Http(c) => {
                let settings = c.into_settings(key)?;
                let task = settings.clone();
                Ok(Running {
                    ingest: Some(settings),
                    ..Running::task(Box::new(move |token| {
                        Box::pin(http::run(task.clone(), events.clone(), token))
                    }))
                })
            }
        }
    }
}

/// What sources may use besides their event channel.
#[derive(Clone)]
pub(crate) struct SourceDeps {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Metrics,
    /// Notified when a source revoked access (a withdrawn consent), so that subscriptions end
    /// at once rather than at the next periodic check.
    pub(crate) access_changed: Arc<Notify>,
}

/// A started source.
pub(crate) struct Running {
    /// Starts the task; the lease loop calls it each time this instance becomes leader.
    pub(crate) start: Start,
    /// Fetches history on demand before it is served (the `enedis` source).
    pub(crate) upstream: Option<Arc<dyn Upstream>>,
    /// Hands out consent pages (the `enedis` source).
    pub(crate) consent_pages: Option<ConsentPages>,
    /// The consent chain of an `enedis` source, for the web pages.
    pub(crate) enedis: Option<Arc<enedis::Enedis>>,
    /// The devices that post readings to the web server (the `http` source).
    pub(crate) ingest: Option<http::HttpSettings>,
}

impl Running {
    /// A source that only produces events.
    pub(crate) fn task(start: Start) -> Running {
        Running {
            start,
            upstream: None,
            consent_pages: None,
            enedis: None,
            ingest: None,
        }
    }
}

/// A source whose history lives upstream and is fetched when asked for.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// Makes sure the readings of `series` of `usage_point` over `[start, end)` are in the
    /// store, fetching what is missing on behalf of `requester` (a bare JID).
    async fn ensure(
        &self,
        usage_point: &str,
        series: &str,
        start: i64,
        end: i64,
        requester: &str,
    ) -> Result<(), FetchError>;
}

/// Why history could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The upstream API refused or failed: its own code (or HTTP status) and message.
    #[error("{issuer} error {code}: {message}")]
    Upstream {
        issuer: &'static str,
        code: String,
        message: String,
    },
    /// Our share of the upstream quota is used up for now.
    #[error("{message}")]
    Busy { message: String },
    /// A failure of ours (store); logged, not shown.
    #[error("{0}")]
    Internal(String),
}

/// A data source as discovery shows it (`<source>@D`, form `urn:quoalise:0#source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub(crate) id: String,
    /// `demo`, `enedis`, `xaal`, `http`.
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) description: String,
}

/// A source that hands out consent pages (`get_authorize_uri` on its JID): the enedis source
/// fills this registry, so that the command knows nothing of Enedis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentPages {
    /// Pages one application may keep at once.
    pub(crate) max_per_app: u32,
}

impl ConsentPages {
    /// A source handing out at most `max_per_app` pages per application (for tests of the
    /// context without a running source).
    pub fn new(max_per_app: u32) -> ConsentPages {
        ConsentPages { max_per_app }
    }
}

/// What a source tells the rest of the component.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A usage point exists, with these series (idempotent: sent again after a restart).
    Declare {
        usage_point: UsagePoint,
        series: Vec<Series>,
    },
    /// A device stopped (or resumed) reporting.
    Online { usage_point: String, online: bool },
    /// Readings of one declared series (history or live); re-sending a reading replaces it.
    Readings(Batch),
    /// New readings as they are produced: stored like [`SourceEvent::Readings`], published as a
    /// PubSub item and notified to subscribers.
    Live(Batch),
    /// The bare JIDs that own a usage point (xAAL `owners`): they get a grant of origin
    /// `source` on all of its series; owners no longer listed lose theirs.
    Owners {
        usage_point: String,
        owners: Vec<String>,
    },
    /// Source `source` (re)started and has heard from none of its devices yet (xAAL): its
    /// stored usage points are offline until declared again, and the grants of origin `source`
    /// on each follow `owners`. Without it, a device gone while the component was down would
    /// stay online forever, and an owner removed from the config would keep the devices that
    /// never come back.
    Started { source: String, owners: Vec<String> },
}
