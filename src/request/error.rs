//! The one mapping from request failures to XMPP stanza errors.
//!
//! Handlers return `Result<_, RequestError>`; only this file decides the error type, condition and
//! text a client sees. Internal failures are logged here and reach the client without details.

use std::str::FromStr;

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::store::StoreError;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The addressed entity or node does not exist, or the requester may not know it exists.
    #[error("item not found")]
    ItemNotFound,
    /// Malformed request; the text names the offending field or element.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The requester has no grant (or no valid consent) for this data.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The request is understood but never allowed for users (e.g. creating a node).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Nothing here handles this kind of request.
    #[error("service unavailable")]
    ServiceUnavailable,
    /// XEP-0050: the sessionid is unknown or belongs to someone else.
    #[error("bad sessionid")]
    BadSession,
    /// XEP-0050: the session existed but timed out.
    #[error("session expired")]
    SessionExpired,
    /// XEP-0050: the action is not allowed at this stage.
    #[error("bad action: {0}")]
    BadAction(String),
    /// XEP-0060: the node is whitelist-only and the requester has no grant.
    #[error("closed node: {0}")]
    ClosedNode(String),
    /// XEP-0060: the `jid` of a subscription request is not the requester's.
    #[error("invalid jid: {0}")]
    InvalidJid(String),
    /// XEP-0060: unsubscribing a JID that has no subscription.
    #[error("not subscribed")]
    NotSubscribed,
    /// XEP-0060: the subid does not match the subscription.
    #[error("invalid subid")]
    InvalidSubid,
    /// XEP-0060: a request we do not implement, by feature name.
    #[error("unsupported pubsub feature {0}")]
    Unsupported(&'static str),
    /// A subscription limit of `[limits]` is reached; the text names it. `pubsub`: the request
    /// was XEP-0060's, whose answer also carries `<too-many-subscriptions/>` (§6.1.3).
    #[error("too many subscriptions: {text}")]
    TooManySubscriptions { text: String, pubsub: bool },
    /// Too many open sessions or requests from this requester; try later.
    #[error("resource constraint: {0}")]
    ResourceConstraint(String),
    /// The requester sends faster than its rate allows (XEP-0205); try later.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// The stanza breaks a structural limit (depth, size) and was not read.
    #[error("stanza refused: {0}")]
    StanzaRefused(String),
    /// An upstream API failed (docs/protocol.md §7): `issuer` names it, `code` is its own code
    /// (or the HTTP status), `message` its text.
    #[error("upstream error {code} from {issuer}: {message}")]
    Upstream {
        issuer: &'static str,
        code: String,
        message: String,
    },
    /// A failure of ours; the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> Self {
        RequestError::Internal(format!("store: {e}"))
    }
}

impl From<crate::source::FetchError> for RequestError {
    fn from(e: crate::source::FetchError) -> Self {
        use crate::source::FetchError;
        match e {
            FetchError::Upstream {
                issuer,
                code,
                message,
            } => RequestError::Upstream {
                issuer,
                code,
                message,
            },
            FetchError::Busy { message } => RequestError::ResourceConstraint(message),
            FetchError::Internal(detail) => RequestError::Internal(detail),
        }
    }
}

impl RequestError {
    pub(crate) fn bad_request(text: impl Into<String>) -> Self {
        RequestError::BadRequest(text.into())
    }

    /// The stanza error the client receives.
    pub(crate) fn to_stanza_error(&self) -> StanzaError {
        let (type_, condition, text) = match self {
            RequestError::ItemNotFound => (
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "No such item".to_owned(),
            ),
            RequestError::BadRequest(text) => (
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                text.clone(),
            ),
            RequestError::NotAuthorized(text) => (
                ErrorType::Auth,
                DefinedCondition::NotAuthorized,
                text.clone(),
            ),
            RequestError::Forbidden(text) => {
                (ErrorType::Auth, DefinedCondition::Forbidden, text.clone())
            }
            RequestError::ServiceUnavailable => (
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "This request is not supported here".to_owned(),
            ),
            RequestError::BadSession => {
                return with_command_condition(
                    StanzaError::new(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "en",
                        "Unknown or foreign command session",
                    ),
                    "bad-sessionid",
                )
            }
            RequestError::SessionExpired => {
                return with_command_condition(
                    StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::NotAllowed,
                        "en",
                        "The command session expired; execute the command again",
                    ),
                    "session-expired",
                )
            }
            RequestError::BadAction(text) => {
                return with_command_condition(
                    StanzaError::new(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "en",
                        text.clone(),
                    ),
                    "bad-action",
                )
            }
            RequestError::ClosedNode(text) => {
                return with_pubsub_condition(
                    StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::NotAllowed,
                        "en",
                        text.clone(),
                    ),
                    "closed-node",
                    None,
                )
            }
            RequestError::InvalidJid(text) => {
                return with_pubsub_condition(
                    StanzaError::new(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "en",
                        text.clone(),
                    ),
                    "invalid-jid",
                    None,
                )
            }
            RequestError::NotSubscribed => {
                return with_pubsub_condition(
                    StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::UnexpectedRequest,
                        "en",
                        "This JID has no subscription to this node",
                    ),
                    "not-subscribed",
                    None,
                )
            }
            RequestError::InvalidSubid => {
                return with_pubsub_condition(
                    StanzaError::new(
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        "en",
                        "No subscription of this JID has this subid",
                    ),
                    "invalid-subid",
                    None,
                )
            }
            RequestError::Unsupported(feature) => {
                return with_pubsub_condition(
                    StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        "en",
                        format!("{feature} is not supported here"),
                    ),
                    "unsupported",
                    Some(feature),
                )
            }
            RequestError::TooManySubscriptions { text, pubsub } => {
                let error = StanzaError::new(
                    ErrorType::Wait,
                    DefinedCondition::PolicyViolation,
                    "en",
                    text.clone(),
                );
                if !*pubsub {
                    return error;
                }
                return with_pubsub_condition(error, "too-many-subscriptions", None);
            }
            RequestError::ResourceConstraint(text) => (
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                text.clone(),
            ),
            // XEP-0205 allows policy-violation here, but slixmpp (which the Quoalise Python
            // client is built on) does not know that condition and turns the answer into a
            // timeout: resource-constraint, with a text saying why, reaches every client.
            RequestError::RateLimited(text) => (
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                text.clone(),
            ),
            RequestError::StanzaRefused(text) => (
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                text.clone(),
            ),
            RequestError::Upstream {
                issuer,
                code,
                message,
            } => {
                let mut error = StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::UndefinedCondition,
                    "en",
                    message.clone(),
                );
                error.other = Some(
                    Element::builder("upstream-error", crate::stanzas::ns::QUOALISE)
                        .attr(minidom::rxml::xml_ncname!("issuer").to_ncname(), *issuer)
                        .attr(
                            minidom::rxml::xml_ncname!("code").to_ncname(),
                            code.as_str(),
                        )
                        .build(),
                );
                return error;
            }
            RequestError::Internal(detail) => {
                tracing::error!(%detail, "internal error while serving a request");
                (
                    ErrorType::Cancel,
                    DefinedCondition::InternalServerError,
                    "Internal error; the administrator can find details in the logs".to_owned(),
                )
            }
        };
        StanzaError::new(type_, condition, "en", text)
    }
}

/// Adds a XEP-0050 application condition (`<bad-sessionid/>`, …) to a stanza error.
fn with_command_condition(mut error: StanzaError, condition: &str) -> StanzaError {
    error.other = Some(Element::builder(condition, crate::stanzas::ns::COMMANDS).build());
    error
}

/// Adds a XEP-0060 application condition (`<closed-node/>`, …) to a stanza error.
fn with_pubsub_condition(
    mut error: StanzaError,
    condition: &str,
    feature: Option<&str>,
) -> StanzaError {
    let mut el = Element::builder(condition, crate::stanzas::ns::PUBSUB_ERRORS);
    if let Some(feature) = feature {
        el = el.attr(minidom::rxml::xml_ncname!("feature").to_ncname(), feature);
    }
    error.other = Some(el.build());
    error
}

/// An iq error built from the raw attributes of `original` (which may not parse as an iq).
///
/// `reply` swaps `from` and `to` (answering a request); otherwise they are kept (replacing a
/// stanza of ours that cannot be sent). Attributes that are not valid JIDs are left out.
pub(crate) fn raw_iq_error(original: &Element, error: StanzaError, reply: bool) -> Option<Element> {
    let id = original.attr("id")?;
    let jid = |name: &str| original.attr(name).and_then(|v| Jid::from_str(v).ok());
    let (from, to) = if reply {
        (jid("to"), jid("from"))
    } else {
        (jid("from"), jid("to"))
    };
    Some(
        Iq::Error {
            from,
            to,
            id: id.to_owned(),
            error,
            payload: None,
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_types() {
        let cases = [
            (
                RequestError::ItemNotFound,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
            ),
            (
                RequestError::bad_request("field start_time: not a date"),
                ErrorType::Modify,
                DefinedCondition::BadRequest,
            ),
            (
                RequestError::NotAuthorized("no grant".into()),
                ErrorType::Auth,
                DefinedCondition::NotAuthorized,
            ),
            (
                RequestError::ServiceUnavailable,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
            ),
            (
                RequestError::ResourceConstraint("8 requests in flight".into()),
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
            ),
            (
                RequestError::RateLimited("50 requests per second".into()),
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
            ),
            (
                RequestError::StanzaRefused("deeper than 64".into()),
                ErrorType::Modify,
                DefinedCondition::BadRequest,
            ),
        ];
        for (error, type_, condition) in cases {
            let e = error.to_stanza_error();
            assert_eq!((e.type_, e.defined_condition), (type_, condition));
        }
    }

    #[test]
    fn upstream_errors_carry_issuer_code_and_message() {
        let e = RequestError::Upstream {
            issuer: "enedis-data-connect",
            code: "ADAM-ERR0123".into(),
            message: "La période demandée est antérieure à la mise en service".into(),
        }
        .to_stanza_error();
        assert_eq!(e.type_, ErrorType::Cancel);
        assert_eq!(e.defined_condition, DefinedCondition::UndefinedCondition);
        let other = e.other.unwrap();
        assert!(other.is("upstream-error", crate::stanzas::ns::QUOALISE));
        assert_eq!(other.attr("issuer"), Some("enedis-data-connect"));
        assert_eq!(other.attr("code"), Some("ADAM-ERR0123"));
        assert_eq!(
            e.texts.values().next().map(String::as_str),
            Some("La période demandée est antérieure à la mise en service")
        );
    }

    #[test]
    fn command_conditions_are_attached() {
        let e = RequestError::BadSession.to_stanza_error();
        assert_eq!(e.defined_condition, DefinedCondition::BadRequest);
        assert_eq!(e.other.unwrap().name(), "bad-sessionid");
        let e = RequestError::SessionExpired.to_stanza_error();
        assert_eq!(e.defined_condition, DefinedCondition::NotAllowed);
        assert_eq!(e.other.unwrap().name(), "session-expired");
    }

    #[test]
    fn pubsub_conditions_are_attached() {
        let e = RequestError::ClosedNode("no grant".into()).to_stanza_error();
        assert_eq!(
            (e.type_, e.defined_condition),
            (ErrorType::Cancel, DefinedCondition::NotAllowed)
        );
        assert_eq!(e.other.unwrap().name(), "closed-node");
        let e = RequestError::Unsupported("publish").to_stanza_error();
        let other = e.other.unwrap();
        assert_eq!(
            (other.name(), other.attr("feature")),
            ("unsupported", Some("publish"))
        );
        let e = RequestError::NotSubscribed.to_stanza_error();
        assert_eq!(e.defined_condition, DefinedCondition::UnexpectedRequest);
    }

    #[test]
    fn subscription_limits_are_policy_violations_to_retry_later() {
        for pubsub in [true, false] {
            let e = RequestError::TooManySubscriptions {
                text: "limit subscriptions_per_node".into(),
                pubsub,
            }
            .to_stanza_error();
            assert_eq!(
                (e.type_, e.defined_condition),
                (ErrorType::Wait, DefinedCondition::PolicyViolation)
            );
            assert!(e.texts["en"].contains("subscriptions_per_node"));
            let other = e.other.map(|o| (o.name().to_owned(), o.ns()));
            let expected = pubsub.then(|| {
                (
                    "too-many-subscriptions".to_owned(),
                    crate::stanzas::ns::PUBSUB_ERRORS.to_owned(),
                )
            });
            assert_eq!(other, expected);
        }
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let e = RequestError::Internal("password=hunter2 at db.example".into()).to_stanza_error();
        assert_eq!(e.defined_condition, DefinedCondition::InternalServerError);
        assert!(e.texts.values().all(|t| !t.contains("hunter2")));
    }

    #[test]
    fn raw_errors_swap_addresses_when_replying() {
        let el: Element =
            "<iq xmlns='jabber:component:accept' type='get' id='x1' from='a@b/c' to='d'/>"
                .parse()
                .unwrap();
        let err = RequestError::bad_request("x").to_stanza_error();
        let reply = raw_iq_error(&el, err.clone(), true).unwrap();
        assert_eq!(
            (
                reply.attr("type"),
                reply.attr("id"),
                reply.attr("to"),
                reply.attr("from")
            ),
            (Some("error"), Some("x1"), Some("a@b/c"), Some("d"))
        );
        let kept = raw_iq_error(&el, err.clone(), false).unwrap();
        assert_eq!(kept.attr("to"), Some("d"));
        let no_id: Element = "<iq xmlns='jabber:component:accept' type='get'/>"
            .parse()
            .unwrap();
        assert!(raw_iq_error(&no_id, err, true).is_none());
    }

    #[test]
    fn bad_request_text_names_the_field() {
        let e = RequestError::bad_request("field end_time: before start_time").to_stanza_error();
        assert!(e.texts["en"].contains("end_time"));
    }
}
