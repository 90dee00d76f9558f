//! XEP-0050: Ad-Hoc Commands — the engine.
//!
//! The engine owns sessions, stages and the command list shown in discovery; the commands
//! themselves (in `crate::commands`) only declare a [`Spec`], build their form and run with the
//! submitted values. A command that has more to send than one stanza may carry returns
//! [`Stage::More`] with a cursor: the engine keeps the session and the client fetches the rest
//! with the `next` action.
//!
//! Sessions live in memory, bounded by `[limits]`: `sessions_per_requester` per bare JID (all
//! its resources together, so that one account cannot fill the table from many resources) and
//! `sessions_total` in all. Idle sessions expire after [`SESSION_TTL`], or after
//! [`PRESSURE_TTL`] while the table is more than 3/4 full, so that a flood of abandoned
//! sessions from many accounts cannot keep it full for long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use minidom::Element;
use tokio::sync::Mutex;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, Identity, Item};
use xmpp_parsers::jid::{BareJid, Jid};

use crate::config::LimitsConfig;
use crate::request::error::RequestError;
use crate::request::{Context, Request, Target};
use crate::stanzas::command::{Action, Actions, Command, Note, Status};
use crate::stanzas::form::Submitted;
use crate::stanzas::ns;

/// How long an idle session is kept.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(600);
/// How long an idle session is kept while more than 3/4 of `sessions_total` are open: a client
/// answers a form within a minute, an abandoned session need not hold a place for ten.
pub(crate) const PRESSURE_TTL: Duration = Duration::from_secs(60);

/// Where the engine reads the time: `Instant::now`, or a clock a test moves.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

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

struct Session {
    node: &'static str,
    /// The full JID that opened it: only it may continue the session (XEP-0050 §4.3).
    owner: Jid,
    /// Its bare JID, whose resources share the per-requester limit.
    requester: BareJid,
    target: Jid,
    /// Set once the form has been submitted and the run has more pages.
    paging: Option<(Submitted, String)>,
    touched: Instant,
}

/// The registered commands and their open sessions.
pub struct Engine {
    commands: Vec<Arc<dyn AdHocCommand>>,
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    clock: Clock,
}

impl Engine {
    pub fn new(commands: Vec<Arc<dyn AdHocCommand>>) -> Self {
        Self::with_ttl(commands, SESSION_TTL)
    }

    pub(crate) fn with_ttl(commands: Vec<Arc<dyn AdHocCommand>>, ttl: Duration) -> Self {
        Engine {
            commands,
            sessions: Mutex::new(HashMap::new()),
            ttl,
            clock: Arc::new(Instant::now),
        }
    }

    /// The same engine reading the time from `clock` (tests move time without waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How long an idle session is kept when `open` sessions are in the table.
    fn ttl_at(&self, open: usize, limits: &LimitsConfig) -> Duration {
        if open.saturating_mul(4) > limits.sessions_total.saturating_mul(3) {
            self.ttl.min(PRESSURE_TTL)
        } else {
            self.ttl
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
            return Err(RequestError::NotAuthorized(format!(
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
                    let sessionid = self.open(spec.node, req, &ctx.limits).await?;
                    let form = command.form(ctx, req).await?;
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

        let paging = self.take(&sessionid, spec.node, req, &ctx.limits).await?;
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
            (_, None, Some((input, cursor))) => {
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
                self.store(
                    sessionid.clone(),
                    Session {
                        node: spec.node,
                        owner: req.from.clone(),
                        requester: req.requester.clone(),
                        target: req.to.clone(),
                        paging: Some((input, cursor)),
                        touched: (self.clock)(),
                    },
                    &ctx.limits,
                )
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

    async fn open(
        &self,
        node: &'static str,
        req: &Request,
        limits: &LimitsConfig,
    ) -> Result<String, RequestError> {
        let id = crate::model::id::random_id();
        self.store(
            id.clone(),
            Session {
                node,
                owner: req.from.clone(),
                requester: req.requester.clone(),
                target: req.to.clone(),
                paging: None,
                touched: (self.clock)(),
            },
            limits,
        )
        .await?;
        Ok(id)
    }

    /// Keeps a session, within the limits; expired sessions go first. The table never holds
    /// more than `sessions_total` entries, so the scans here are bounded whatever the requests.
    async fn store(
        &self,
        id: String,
        session: Session,
        limits: &LimitsConfig,
    ) -> Result<(), RequestError> {
        let now = (self.clock)();
        let mut sessions = self.sessions.lock().await;
        let ttl = self.ttl_at(sessions.len(), limits);
        sessions.retain(|_, s| now.saturating_duration_since(s.touched) < ttl);
        let mine = sessions
            .values()
            .filter(|s| s.requester == session.requester)
            .count();
        if mine >= limits.sessions_per_requester {
            return Err(RequestError::ResourceConstraint(format!(
                "Too many open command sessions for {}: {} at most (sessions_per_requester); \
                 complete or cancel some first",
                session.requester, limits.sessions_per_requester
            )));
        }
        if sessions.len() >= limits.sessions_total {
            // Debug only: a flood would otherwise flood the log too.
            tracing::debug!(
                open = sessions.len(),
                "command session table full; refusing a new session"
            );
            return Err(RequestError::ResourceConstraint(format!(
                "The service has too many open command sessions ({} at most, sessions_total); \
                 try again later",
                limits.sessions_total
            )));
        }
        sessions.insert(id, session);
        Ok(())
    }

    /// Removes and returns a session's paging state, checking it is the requester's own.
    async fn take(
        &self,
        id: &str,
        node: &str,
        req: &Request,
        limits: &LimitsConfig,
    ) -> Result<Option<(Submitted, String)>, RequestError> {
        let now = (self.clock)();
        let mut sessions = self.sessions.lock().await;
        let ttl = self.ttl_at(sessions.len(), limits);
        let owned = sessions
            .get(id)
            .is_some_and(|s| s.owner == req.from && s.target == req.to && s.node == node);
        if !owned {
            return Err(RequestError::BadSession);
        }
        let session = sessions.remove(id).ok_or(RequestError::BadSession)?;
        if now.saturating_duration_since(session.touched) >= ttl {
            return Err(RequestError::SessionExpired);
        }
        Ok(session.paging)
    }

    /// Open sessions (for tests and status reports).
    pub async fn open_sessions(&self) -> usize {
        self.sessions.lock().await.len()
    }
}
