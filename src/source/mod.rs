//! Data sources: long-running tasks that declare usage points and produce readings.
//!
//! A source never touches XMPP or SQL. It sends [`SourceEvent`]s on a channel; the publisher task
//! (`crate::publisher`) persists them. Each `[[source]]` table of the config becomes one source,
//! selected by its `type` key.

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::model::{Batch, Series, UsagePoint};

pub mod demo;
pub mod enedis;
pub mod xaal;

/// One `[[source]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Demo(demo::DemoConfig),
    Xaal(xaal::XaalConfig),
}

impl SourceConfig {
    /// The source id: the localpart of its JID.
    pub fn id(&self) -> &str {
        match self {
            SourceConfig::Demo(c) => &c.id,
            SourceConfig::Xaal(c) => &c.id,
        }
    }

    /// What discovery says about the source.
    pub fn info(&self) -> SourceInfo {
        match self {
            SourceConfig::Demo(c) => c.info(),
            SourceConfig::Xaal(c) => c.info(),
        }
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !crate::model::is_valid_usage_point_id(self.id()) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.id"),
                message: "must be a JID localpart of letters, digits, '-', '_' or '.'".into(),
            });
        }
        match self {
            SourceConfig::Demo(c) => c.validate(key),
            SourceConfig::Xaal(c) => c.validate(key),
        }
    }

    /// Runs the source until `shutdown` is cancelled or the receiver is gone.
    pub async fn run(self, events: mpsc::Sender<SourceEvent>, shutdown: CancellationToken) {
        match self {
            SourceConfig::Demo(c) => demo::run(c, events, shutdown).await,
            SourceConfig::Xaal(c) => xaal::gateway::run(c, events, shutdown).await,
        }
    }
}

/// A data source as discovery shows it (`<source>@D`, form `urn:quoalise:0#source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub id: String,
    /// `demo`, `enedis`, `xaal`.
    pub kind: String,
    pub title: String,
    pub description: String,
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
}
