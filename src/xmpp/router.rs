//! Routes each inbound stanza to its handler and returns the stanzas to send back.
//!
//! The router knows nothing of sockets: it takes a raw element and returns elements, so every
//! behaviour can be tested with golden XML and an in-memory store. It resolves the addressed
//! entity and the requester's rights once per stanza, then dispatches on the payload.

use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::request::error::raw_iq_error;
use crate::request::{Answer, Context, Request, RequestError, Target};
use crate::stanzas::ns;
use crate::xep;
use crate::xep::adhoc::Engine;

#[derive(Clone)]
pub struct Router {
    ctx: Arc<Context>,
    /// The ad-hoc commands and their sessions.
    commands: Arc<Engine>,
}

impl Router {
    pub fn new(ctx: Context, commands: Engine) -> Self {
        let commands = commands.in_store(ctx.store.clone());
        Router {
            ctx: Arc::new(ctx),
            commands: Arc::new(commands),
        }
    }

    /// The ad-hoc commands and their open sessions.
    pub fn commands(&self) -> &Engine {
        &self.commands
    }

    /// The context, to share with tasks that build stanzas outside requests (publisher).
    pub fn shared_context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// Handles one inbound element; returns what to send (possibly nothing). Never fails: every
    /// problem becomes an error stanza or a log line.
    pub async fn handle(&self, element: Element) -> Vec<Element> {
        if !element.has_ns(ns::COMPONENT) {
            tracing::debug!(name = element.name(), "ignoring non-stanza element");
            return Vec::new();
        }
        match element.name() {
            "iq" => self.handle_iq(element).await,
            "message" if element.attr("type") == Some("error") => {
                crate::delivery::bounce(&self.ctx, &element).await;
                Vec::new()
            }
            "message" | "presence" => {
                self.check_parses(&element);
                Vec::new()
            }
            other => {
                tracing::debug!(name = other, "ignoring unknown top-level element");
                Vec::new()
            }
        }
    }

    /// Messages and presences carry nothing we act on yet; an unparsable one is only logged so
    /// that a misbehaving client is visible to the admin.
    fn check_parses(&self, element: &Element) {
        let from = element.attr("from").unwrap_or("?");
        let parsed = match element.name() {
            "message" => xmpp_parsers::message::Message::try_from(element.clone())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => xmpp_parsers::presence::Presence::try_from(element.clone())
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = parsed {
            tracing::info!(%from, kind = element.name(), %error, "dropping malformed stanza");
        }
    }

    async fn handle_iq(&self, element: Element) -> Vec<Element> {
        let iq = match Iq::try_from(element.clone()) {
            Ok(iq) => iq,
            Err(error) => {
                return malformed_iq_reply(&element, &error.to_string())
                    .into_iter()
                    .collect()
            }
        };
        let (from, to, id, payload, is_get) = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, true),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, false),
            // Answers to our own pings and bounces of what we sent: nothing to do here.
            Iq::Result { .. } | Iq::Error { .. } => return Vec::new(),
        };
        let (Some(from), Some(to)) = (from, to) else {
            tracing::info!(%id, "dropping iq without from or to");
            return Vec::new();
        };
        let outcome = match self.resolve(&from, &to).await {
            Ok(request) => self.dispatch(&request, &payload, is_get).await,
            // PubSub reads on a usage point the requester may not see: the whitelist answer
            // (closed node), given whether the usage point exists or not, so nothing leaks.
            Err(RequestError::ItemNotFound) if to.node().is_some() && is_pubsub_read(&payload) => {
                Err(RequestError::ClosedNode(
                    "You have no grant for this usage point".into(),
                ))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Answer { payload, followups }) => {
                let mut out = Vec::with_capacity(1 + followups.len());
                out.push(result_iq(&to, &from, id, payload));
                out.extend(followups);
                out
            }
            Err(error) => vec![Iq::Error {
                from: Some(to),
                to: Some(from),
                id,
                error: error.to_stanza_error(),
                payload: None,
            }
            .into()],
        }
    }

    async fn resolve(&self, from: &Jid, to: &Jid) -> Result<Request, RequestError> {
        if to.domain() != self.ctx.domain.domain() {
            return Err(RequestError::ItemNotFound);
        }
        let requester = from.to_bare();
        let view = self.ctx.access.view(&requester).await?;
        let target = match to.node() {
            None => Target::Service,
            Some(node) => {
                let node = node.as_str();
                if let Some(source) = self.ctx.sources.iter().find(|s| s.id == node) {
                    Target::Source(source.clone())
                } else if !view.sees_usage_point(node) {
                    // Same answer as for an id that does not exist: no existence leak.
                    return Err(RequestError::ItemNotFound);
                } else {
                    match self.ctx.store.usage_point(node).await? {
                        Some(up) => Target::UsagePoint(up),
                        None => return Err(RequestError::ItemNotFound),
                    }
                }
            }
        };
        Ok(Request {
            from: from.clone(),
            to: to.clone(),
            requester,
            target,
            view,
        })
    }

    async fn dispatch(
        &self,
        request: &Request,
        payload: &Element,
        is_get: bool,
    ) -> Result<Answer, RequestError> {
        let ns = payload.ns();
        let payload = match (is_get, ns.as_str(), payload.name()) {
            (true, ns::DISCO_INFO, "query") => {
                xep::disco::info(&self.ctx, &self.commands, request, payload).await?
            }
            (true, ns::DISCO_ITEMS, "query") => {
                xep::disco::items(&self.ctx, &self.commands, request, payload).await?
            }
            (true, ns::PING, "ping") => return Ok(Answer::default()),
            (true, ns::VERSION, "query") => xep::version::result(),
            (false, ns::COMMANDS, "command") => {
                self.commands.handle(&self.ctx, request, payload).await?
            }
            (_, ns::PUBSUB | ns::PUBSUB_OWNER, "pubsub") => {
                return xep::pubsub::handle(&self.ctx, request, payload, is_get).await
            }
            _ => return Err(RequestError::ServiceUnavailable),
        };
        Ok(Some(payload).into())
    }
}

/// A subscribe or items request, which XEP-0060 answers with `closed-node` on a whitelist node.
fn is_pubsub_read(payload: &Element) -> bool {
    payload.is("pubsub", ns::PUBSUB)
        && payload
            .children()
            .any(|c| c.is("subscribe", ns::PUBSUB) || c.is("items", ns::PUBSUB))
}

/// An `<iq type="result"/>` built directly: converting an `Iq` to an `Element` re-serialises and
/// re-parses the payload, which costs more than building a year of history.
fn result_iq(from: &Jid, to: &Jid, id: String, payload: Option<Element>) -> Element {
    use minidom::rxml::xml_ncname;
    Element::builder("iq", ns::COMPONENT)
        .attr(xml_ncname!("type").to_ncname(), "result")
        .attr(xml_ncname!("id").to_ncname(), id)
        .attr(xml_ncname!("from").to_ncname(), from.to_string())
        .attr(xml_ncname!("to").to_ncname(), to.to_string())
        .append_all(payload)
        .build()
}

/// The answer to an `<iq/>` that xmpp-parsers rejects: `bad-request` when it is a request (a get
/// or set with an id), silence otherwise (never answer an error or a result: that could loop).
fn malformed_iq_reply(element: &Element, reason: &str) -> Option<Element> {
    tracing::info!(from = element.attr("from").unwrap_or("?"), %reason, "malformed iq");
    if !matches!(element.attr("type"), Some("get") | Some("set")) {
        return None;
    }
    let error = RequestError::bad_request(format!(
        "Malformed iq: a get or set must have exactly one payload element and valid addresses ({reason})"
    ))
    .to_stanza_error();
    raw_iq_error(element, error, true)
}
