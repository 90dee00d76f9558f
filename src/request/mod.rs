//! What every request handler shares: the context (store, access, sources, limits), the
//! request resolved once (who asks, about what, with which rights), the entity it targets and
//! the answer a handler gives back.
//!
//! It sits below both the link (`xmpp`), which builds requests, and the handlers (`xep`,
//! `commands`), which answer them, so that neither imports the other. Source-specific needs
//! appear here only as generic registries the sources fill (e.g. [`ConsentPages`]).

pub(crate) mod error;

use std::collections::HashMap;
use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::access::{Access, View};
use crate::config::LimitsConfig;
use crate::model::UsagePoint;
use crate::source::{ConsentPages, SourceInfo, Upstream};
use crate::store::Store;

pub(crate) use error::RequestError;

/// What every handler may need.
pub struct Context {
    pub domain: BareJid,
    pub sources: Vec<SourceInfo>,
    pub store: Arc<dyn Store>,
    pub access: Access,
    /// Largest stanza the server accepts from us; answers are paged below it.
    pub max_stanza_size: usize,
    /// Per source id: sources whose history is fetched on demand before it is served.
    pub upstreams: HashMap<String, Arc<dyn Upstream>>,
    /// Per source id: sources that hand out consent pages (`get_authorize_uri`), and how.
    pub consent_sources: HashMap<String, ConsentPages>,
    /// Base URL of the web pages (`[web] public_url`), for consent links.
    pub public_url: String,
    /// What one requester may hold (`[limits]`): command sessions, subscriptions.
    pub limits: LimitsConfig,
    /// `export`: readings above which the answer is a one-time download link on the web server
    /// (`[privacy] export_inline_max`); `None` when no web server runs, and every export is
    /// paged.
    pub export_inline_max: Option<u64>,
}

impl Context {
    /// `<usage point>@D`.
    pub(crate) fn usage_point_jid(&self, usage_point: &str) -> Jid {
        BareJid::new(&format!("{usage_point}@{}", self.domain))
            .map(Jid::from)
            .unwrap_or_else(|_| self.domain.clone().into())
    }
}

/// The entity a stanza is addressed to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The component's domain.
    Service,
    /// `<source>@D`.
    Source(SourceInfo),
    /// `<usage point>@D`, visible to the requester.
    UsagePoint(UsagePoint),
}

/// What a handler returns: the iq result payload, and stanzas to send right after it (e.g. the
/// last published item after a PubSub subscription).
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) payload: Option<Element>,
    pub(crate) followups: Vec<Element>,
}

impl From<Option<Element>> for Answer {
    fn from(payload: Option<Element>) -> Self {
        Answer {
            payload,
            followups: Vec::new(),
        }
    }
}

/// A request resolved once: who asks, what about, with which rights.
pub struct Request {
    pub(crate) from: Jid,
    pub(crate) to: Jid,
    pub(crate) requester: BareJid,
    pub(crate) target: Target,
    pub(crate) view: View,
}

impl Request {
    /// The source addressed, when the request went to a source JID: commands there only see
    /// that source's usage points.
    pub(crate) fn source_id(&self) -> Option<&str> {
        match &self.target {
            Target::Source(s) => Some(s.id.as_str()),
            _ => None,
        }
    }
}
