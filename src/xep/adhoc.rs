//! XEP-0050: Ad-Hoc Commands — the engine.
//!
//! The engine owns sessions, stages and the command list shown in discovery; the commands
//! themselves (in `crate::commands`) only declare a [`Spec`], build their form and run with the
//! submitted values. A command that has more to send than one stanza may carry returns
//! [`Stage::More`] with a cursor: the engine keeps the session and the client fetches the rest
//! with the `next` action.
//!
//! Sessions live in the store ([`SessionStore`]), not in this process: instances sharing a
//! PostgreSQL database may each receive any stage of a session, as the XMPP server balances
//! stanzas between them. A stage takes its session out of the store in one statement (sent
//! twice, to two instances, it runs once) and puts it back when more pages follow. A session
//! waiting for its form carries no state; one with pages left carries the submitted values and
//! the cursor as JSON, `{"input": [[var, [value, …]], …], "cursor": "…"}` ([`Submitted`]'s own
//! serialisation for `input`, the command's cursor as it returned it).
//!
//! Sessions are bounded by `[limits]`: `sessions_per_requester` per bare JID (all its resources
//! together, so that one account cannot fill the table from many resources) and
//! `sessions_total` in all, counted by the store atomically against every instance. Idle
//! sessions expire after [`SESSION_TTL`], or after [`PRESSURE_TTL`] while the table is more than
//! 3/4 full, so that a flood of abandoned sessions from many accounts cannot keep it full for
//! long. Times are unix seconds, read from the engine's [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minidom::Element;
use serde::{Deserialize, Serialize};
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, Identity, Item};
use xmpp_parsers::jid::Jid;

use crate::config::LimitsConfig;
use crate::request::error::RequestError;
use crate::request::{Context, Request, Target};
use crate::stanzas::command::{Action, Actions, Command, Note, Status};
use crate::stanzas::form::Submitted;
use crate::stanzas::ns;
use crate::store::{NewSession, Opened, SessionKey, SessionLimits, Store, Taken};

/// How long an idle session is kept.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(600);
/// How long an idle session is kept while more than 3/4 of `sessions_total` are open: a client
/// answers a form within a minute, an abandoned session need not hold a place for ten.
pub(crate) const PRESSURE_TTL: Duration = Duration::from_secs(60);

/// Where the engine reads the time, unix seconds: [`crate::time::now`], or a clock a test
/// moves.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone; the command checks grants on the data it touches.
    Anyone,
    /// Only `[access] admins`.
    Admin,
}

/// Which JIDs list a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Service,
    /// Every source JID, or only sources of this kind (`enedis`).
    Source(Option<&'static str>),
    UsagePoint,
}

/// What a command declares about itself.
#[derive(Debug)]
pub struct Spec {
    pub(crate) node: &'static str,
    pub(crate) name: &'static str,
    pub(crate) access: Access,
    pub(crate) scopes: &'static [Scope],
}

impl Spec {
    pub(crate) fn applies_to(&self, target: &Target) -> bool {
        self.scopes.iter().any(|scope| match (scope, target) {
            (Scope::Service, Target::Service) => true,
            (Scope::Source(kind), Target::Source(s)) => kind.is_none_or(|k| k == s.kind),
            (Scope::UsagePoint, Target::UsagePoint(_)) => true,
            _ => false,
        })
    }
}

/// What one stage sends back, after the `<command/>` attributes.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The result form (`type="result"`), first payload.
    pub(crate) form: Option<Element>,
    /// Further payloads, e.g. `<quoalise/>`.
    pub(crate) payloads: Vec<Element>,
    pub(crate) notes: Vec<Note>,
}

/// How a run ends.
#[derive(Debug)]
pub enum Stage {
    Done(Outcome),
    /// This page, and where the next one starts.
    More(Outcome, String),
}

#[async_trait]
pub trait AdHocCommand: Send + Sync + 'static {
    fn spec(&self) -> &'static Spec;

    /// The form shown when the command is executed without one, defaults filled in.
    async fn form(&self, ctx: &Context, req: &Request) -> Result<DataForm, RequestError>;

    /// Runs with the submitted values, from the start (`cursor` = `None`) or from a cursor
    /// returned by a previous [`Stage::More`].
    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        cursor: Option<&str>,
    ) -> Result<Stage, RequestError>;
}

/// What a session with pages left carries to its next stage (stored as JSON, see the module
/// doc).
#[derive(Debug, Serialize, Deserialize)]
struct Paging {
    input: Submitted,
    cursor: String,
}

impl Paging {
    fn encode(&self) -> Result<String, RequestError> {
        serde_json::to_string(self)
            .map_err(|e| RequestError::Internal(format!("command session state: {e}")))
    }

    fn decode(state: &str) -> Result<Paging, RequestError> {
        serde_json::from_str(state)
            .map_err(|e| RequestError::Internal(format!("command session state: {e}")))
    }
}

/// The registered commands; their open sessions are in the store.
pub struct Engine {
    commands: Vec<Arc<dyn AdHocCommand>>,
    ttl: Duration,
    clock: Clock,
    /// The store of the router's context, which the router binds ([`Engine::in_store`]): where
    /// [`Engine::open_sessions`] counts. Handlers use the context's store, the same one.
    store: Option<Arc<dyn Store>>,
}

impl Engine {
    pub fn new(commands: Vec<Arc<dyn AdHocCommand>>) -> Self {
        Self::with_ttl(commands, SESSION_TTL)
    }

    pub(crate) fn with_ttl(commands: Vec<Arc<dyn AdHocCommand>>, ttl: Duration) -> Self {
        Engine {
            commands,
            ttl,
            clock: Arc::new(crate::time::now),
            store: None,
        }
    }

    /// The same engine reading the time from `clock` (tests move time without waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same engine counting its open sessions in `store` (the router's context's).
    pub(crate) fn in_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The limits the store enforces, from `[limits]` and the engine's time to live.
    fn session_limits(&self, limits: &LimitsConfig) -> SessionLimits {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        SessionLimits {
            per_requester: limits.sessions_per_requester,
            total: limits.sessions_total,
            ttl: secs(self.ttl),
            pressure_ttl: secs(PRESSURE_TTL),
        }
    }

    fn visible<'a>(&'a self, req: &'a Request) -> impl Iterator<Item = &'a Arc<dyn AdHocCommand>> {
        self.commands.iter().filter(move |c| {
            let spec = c.spec();
            spec.applies_to(&req.target)
                && (spec.access == Access::Anyone || matches!(req.view, crate::access::View::All))
        })
    }

    /// disco#items on the commands node.
    pub(crate) fn items(&self, req: &Request) -> Vec<Item> {
        let jid: Jid = req.to.to_bare().into();
        self.visible(req)
            .map(|c| Item {
                jid: jid.clone(),
                node: Some(c.spec().node.to_owned()),
                name: Some(c.spec().name.to_owned()),
            })
            .collect()
    }

    /// disco#info on a command node; `None` when no such command is listed here.
    pub(crate) fn info(&self, req: &Request, node: &str) -> Option<DiscoInfoResult> {
        let command = self.visible(req).find(|c| c.spec().node == node)?;
        Some(DiscoInfoResult {
            node: Some(node.to_owned()),
            identities: vec![Identity {
                category: "automation".into(),
                type_: "command-node".into(),
                lang: None,
                name: Some(command.spec().name.to_owned()),
            }],
            features: [ns::COMMANDS, ns::DATA_FORMS]
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            extensions: vec![],
        })
    }

    /// Handles an `<iq type="set"><command/></iq>` payload; returns the `<command/>` answer.
    pub(crate) async fn handle(
        &self,
        ctx: &Context,
        req: &Request,
        payload: &Element,
    ) -> Result<Element, RequestError> {
        let request =
            Command::try_from(payload).map_err(|e| RequestError::bad_request(e.to_string()))?;
        let command = self
            .commands
            .iter()
            .find(|c| c.spec().node == request.node && c.spec().applies_to(&req.target))
            .ok_or(RequestError::ItemNotFound)?
            .clone();
        let spec = command.spec();
        if spec.access == Access::Admin && !matches!(req.view, crate::access::View::All) {
            return Err(RequestError::Forbidden(format!(
                "{}: this command is reserved to the administrators",
                spec.node
            )));
        }
        let action = request.action.unwrap_or(Action::Execute);
        let submitted = request
            .form()
            .map(Submitted::parse)
            .transpose()
            .map_err(|e| RequestError::bad_request(format!("form: {e}")))?;

        let Some(sessionid) = request.sessionid.clone() else {
            return match (action, submitted) {
                (Action::Cancel, _) => Err(RequestError::BadSession),
                (Action::Prev, _) => Err(RequestError::BadAction(
                    "prev: there is no previous stage".into(),
                )),
                // One-shot: the form comes with the first request.
                (_, Some(input)) => {
                    let sessionid = crate::model::id::random_id();
                    let stage = command.run(ctx, req, &input, None).await?;
                    self.finish(ctx, spec, req, sessionid, input, stage).await
                }
                (_, None) => {
                    let sessionid = crate::model::id::random_id();
                    // The form first: a command that refuses the requester leaves no session
                    // behind to count against its limit.
                    let form = command.form(ctx, req).await?;
                    self.keep(ctx, spec.node, req, &sessionid, None).await?;
                    let mut response = Command::response(spec.node, &sessionid, Status::Executing);
                    response.actions = Some(Actions {
                        default: Some(Action::Complete),
                        allowed: vec![Action::Complete],
                    });
                    response.payloads.push(form.into());
                    Ok(Element::from(response))
                }
            };
        };

        let paging = self.take(ctx, &sessionid, spec.node, req).await?;
        match (action, submitted, paging) {
            (Action::Cancel, _, _) => Ok(Element::from(Command::response(
                spec.node,
                &sessionid,
                Status::Canceled,
            ))),
            (Action::Prev, _, _) => Err(RequestError::BadAction(
                "prev: pages cannot be revisited".into(),
            )),
            // A later page of a paged answer.
            (_, None, Some(Paging { input, cursor })) => {
                let stage = command.run(ctx, req, &input, Some(&cursor)).await?;
                self.finish(ctx, spec, req, sessionid, input, stage).await
            }
            // The form of a multi-stage execution, or a new form replacing a paged run.
            (_, Some(input), _) => {
                let stage = command.run(ctx, req, &input, None).await?;
                self.finish(ctx, spec, req, sessionid, input, stage).await
            }
            (_, None, None) => Err(RequestError::bad_request(format!(
                "{}: submit the form (jabber:x:data type submit) to run the command",
                spec.node
            ))),
        }
    }

    /// Turns a stage into the response; keeps the session when more pages follow.
    async fn finish(
        &self,
        ctx: &Context,
        spec: &'static Spec,
        req: &Request,
        sessionid: String,
        input: Submitted,
        stage: Stage,
    ) -> Result<Element, RequestError> {
        let (outcome, status) = match stage {
            Stage::Done(outcome) => (outcome, Status::Completed),
            Stage::More(outcome, cursor) => {
                let state = Paging { input, cursor }.encode()?;
                self.keep(ctx, spec.node, req, &sessionid, Some(&state))
                    .await?;
                (outcome, Status::Executing)
            }
        };
        let mut response = Command::response(spec.node, &sessionid, status);
        if status == Status::Executing {
            response.actions = Some(Actions {
                default: Some(Action::Next),
                allowed: vec![Action::Next],
            });
        }
        response.notes = outcome.notes;
        response.payloads.extend(outcome.form);
        response.payloads.extend(outcome.payloads);
        Ok(Element::from(response))
    }

    /// Keeps session `id` of `req`'s requester in the store, touched now, within the limits;
    /// the store deletes expired sessions first and counts atomically against other instances.
    async fn keep(
        &self,
        ctx: &Context,
        node: &str,
        req: &Request,
        id: &str,
        state: Option<&str>,
    ) -> Result<(), RequestError> {
        let (owner, requester, target) = (
            req.from.to_string(),
            req.requester.to_string(),
            req.to.to_string(),
        );
        let session = NewSession {
            id,
            node,
            owner: &owner,
            requester: &requester,
            target: &target,
            state,
        };
        let limits = &ctx.limits;
        let opened = ctx
            .store
            .open_session(&session, &self.session_limits(limits), (self.clock)())
            .await?;
        match opened {
            Opened::Opened => Ok(()),
            Opened::RequesterFull => Err(RequestError::ResourceConstraint(format!(
                "Too many open command sessions for {}: {} at most (sessions_per_requester); \
                 complete or cancel some first",
                req.requester, limits.sessions_per_requester
            ))),
            Opened::TableFull { open } => {
                // Debug only: a flood would otherwise flood the log too.
                tracing::debug!(open, "command session table full; refusing a new session");
                Err(RequestError::ResourceConstraint(format!(
                    "The service has too many open command sessions ({} at most, \
                     sessions_total); try again later",
                    limits.sessions_total
                )))
            }
        }
    }

    /// Takes session `id` out of the store and returns its paging state, checking it is the
    /// requester's own (same full JID, same target, same node).
    async fn take(
        &self,
        ctx: &Context,
        id: &str,
        node: &str,
        req: &Request,
    ) -> Result<Option<Paging>, RequestError> {
        let (owner, target) = (req.from.to_string(), req.to.to_string());
        let key = SessionKey {
            id,
            owner: &owner,
            target: &target,
            node,
        };
        let taken = ctx
            .store
            .take_session(&key, &self.session_limits(&ctx.limits), (self.clock)())
            .await?;
        match taken {
            Taken::Unknown => Err(RequestError::BadSession),
            Taken::Expired => Err(RequestError::SessionExpired),
            Taken::Live { state } => state.as_deref().map(Paging::decode).transpose(),
        }
    }

    /// Open sessions, expired ones not yet deleted included, in the whole store (all instances
    /// sharing it); 0 for an engine bound to no store, or when the store cannot be read (for
    /// tests and status reports).
    pub async fn open_sessions(&self) -> usize {
        let Some(store) = &self.store else {
            return 0;
        };
        match store.session_count().await {
            Ok(count) => usize::try_from(count).unwrap_or(usize::MAX),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the command sessions");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding the module doc promises, which sessions left by another instance (or a
    /// previous version) are read back with.
    #[test]
    fn paging_state_is_the_documented_json() {
        let form: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='identifier'><value>urn:dev:prm:1_x</value></field>\
             <field var='lines'><value>a</value><value>b\"</value></field></x>"
            .parse()
            .unwrap();
        let paging = Paging {
            input: Submitted::parse(&form).unwrap(),
            cursor: "1790632800".into(),
        };
        let state = paging.encode().unwrap();
        assert_eq!(
            state,
            r#"{"input":[["identifier",["urn:dev:prm:1_x"]],["lines",["a","b\""]]],"cursor":"1790632800"}"#
        );
        let back = Paging::decode(&state).unwrap();
        assert_eq!((back.input, back.cursor), (paging.input, paging.cursor));
        assert!(matches!(
            Paging::decode("{\"input\":1}"),
            Err(RequestError::Internal(_))
        ));
    }
}
