//! What the web handlers share: the store, the consent sources, the link's state for
//! `/healthz`, the metrics. Its own module so that the handlers (`consent`) and the router
//! (`server`) both use it without importing each other.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use xmpp_parsers::jid::BareJid;

use super::ingest::Ingest;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::enedis::Enedis;
use crate::store::Store;

/// What the handlers share.
pub struct WebState {
    pub domain: BareJid,
    pub store: Arc<dyn Store>,
    /// `enedis` sources by id.
    pub enedis: HashMap<String, Arc<Enedis>>,
    pub metrics: Metrics,
    /// Wakes the delivery task after queueing a message.
    pub wake: Arc<Notify>,
    /// Whether the XMPP link is up.
    pub connected: watch::Receiver<bool>,
    /// Largest request body accepted, in bytes (`[web] max_body`).
    pub max_body: usize,
    /// What `/healthz` checks.
    pub health: Health,
    /// The devices of the `http` sources, when there are any.
    pub ingest: Option<Arc<Ingest>>,
}
