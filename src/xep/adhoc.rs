//! XEP-0050: Ad-Hoc Commands — the engine.
//!
//! The engine owns sessions, stages and the command list shown in discovery; the commands
//! themselves (in `crate::commands`) only declare a [`Spec`], build their form and run with the
//! submitted values. A command that has more to send than one stanza may carry returns
//! [`Stage::More`] with a cursor: the engine keeps the session and the client fetches the rest
//! with the `next` action.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use minidom::Element;
use tokio::sync::Mutex;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, Identity, Item};
use xmpp_parsers::jid::Jid;

use crate::stanzas::command::{Action, Actions, Command, Note, Status};
use crate::stanzas::form::Submitted;
use crate::stanzas::ns;
use crate::xmpp::error::RequestError;
use crate::xmpp::router::{Context, Request, Target};

/// How long an idle session is kept.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Open sessions per requester (full JID); more are refused until some end or expire.
pub const MAX_SESSIONS_PER_REQUESTER: usize = 32;
/// Open sessions in all.
pub const MAX_SESSIONS: usize = 10_000;

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; the command checks grants on the data it touches.
    Anyone,
    /// Only `[access] admins`.
    Admin,
}

/// Which JIDs list a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Service,
    /// Every source JID, or only sources of this kind (`enedis`).
    Source(Option<&'static str>),
    UsagePoint,
}

/// What a command declares about itself.
#[derive(Debug)]
pub struct Spec {
    pub node: &'static str,
    pub name: &'static str,
    pub access: Access,
    pub scopes: &'static [Scope],
}

impl Spec {
    pub fn applies_to(&self, target: &Target) -> bool {
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
    pub form: Option<Element>,
    /// Further payloads, e.g. `<quoalise/>`.
    pub payloads: Vec<Element>,
    pub notes: Vec<Note>,
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
    owner: Jid,
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
}

impl Engine {
    pub fn new(commands: Vec<Arc<dyn AdHocCommand>>) -> Self {
        Self::with_ttl(commands, SESSION_TTL)
    }

    pub fn with_ttl(commands: Vec<Arc<dyn AdHocCommand>>, ttl: Duration) -> Self {
        Engine {
            commands,
            sessions: Mutex::new(HashMap::new()),
            ttl,
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
    pub fn items(&self, req: &Request) -> Vec<Item> {
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
    pub fn info(&self, req: &Request, node: &str) -> Option<DiscoInfoResult> {
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
    pub async fn handle(
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
                    let sessionid = crate::xmpp::id::random_id();
                    let stage = command.run(ctx, req, &input, None).await?;
                    self.finish(spec, req, sessionid, input, stage).await
                }
                (_, None) => {
                    let sessionid = self.open(spec.node, req).await?;
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

        let paging = self.take(&sessionid, spec.node, req).await?;
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
                self.finish(spec, req, sessionid, input, stage).await
            }
            // The form of a multi-stage execution, or a new form replacing a paged run.
            (_, Some(input), _) => {
                let stage = command.run(ctx, req, &input, None).await?;
                self.finish(spec, req, sessionid, input, stage).await
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
                        target: req.to.clone(),
                        paging: Some((input, cursor)),
                        touched: Instant::now(),
                    },
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

    async fn open(&self, node: &'static str, req: &Request) -> Result<String, RequestError> {
        let id = crate::xmpp::id::random_id();
        self.store(
            id.clone(),
            Session {
                node,
                owner: req.from.clone(),
                target: req.to.clone(),
                paging: None,
                touched: Instant::now(),
            },
        )
        .await?;
        Ok(id)
    }

    async fn store(&self, id: String, session: Session) -> Result<(), RequestError> {
        let mut sessions = self.sessions.lock().await;
        let ttl = self.ttl;
        sessions.retain(|_, s| s.touched.elapsed() < ttl);
        let mine = sessions
            .values()
            .filter(|s| s.owner == session.owner)
            .count();
        if mine >= MAX_SESSIONS_PER_REQUESTER || sessions.len() >= MAX_SESSIONS {
            return Err(RequestError::ResourceConstraint(
                "Too many open command sessions; complete or cancel some first".into(),
            ));
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
    ) -> Result<Option<(Submitted, String)>, RequestError> {
        let mut sessions = self.sessions.lock().await;
        let owned = sessions
            .get(id)
            .is_some_and(|s| s.owner == req.from && s.target == req.to && s.node == node);
        if !owned {
            return Err(RequestError::BadSession);
        }
        let session = sessions.remove(id).ok_or(RequestError::BadSession)?;
        if session.touched.elapsed() >= self.ttl {
            return Err(RequestError::SessionExpired);
        }
        Ok(session.paging)
    }

    /// Open sessions (for tests and status reports).
    pub async fn open_sessions(&self) -> usize {
        self.sessions.lock().await.len()
    }
}
