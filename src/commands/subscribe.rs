//! `subscribe` / `unsubscribe` (Quoalise generation 2): push subscriptions. New readings of the
//! series then arrive as `<message>`s to the requester's bare JID carrying `<quoalise><data>`.
//! They count towards the same `[limits]` as PubSub subscriptions; above them the command
//! answers `wait`/`policy-violation` with a text naming the limit.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};

use super::get_history::required;
use super::history::{self, parse_identifier};
use crate::model::SubscriptionKind;
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};
use crate::xep::pubsub::subscribe_within_limits;

pub(crate) struct Subscribe;
pub(crate) struct Unsubscribe;

static SUBSCRIBE: Spec = Spec {
    node: "subscribe",
    name: "Subscribe to new readings",
    access: Access::Anyone,
    scopes: &[Scope::Service, Scope::Source(None)],
};

static UNSUBSCRIBE: Spec = Spec {
    node: "unsubscribe",
    name: "Unsubscribe from new readings",
    access: Access::Anyone,
    scopes: &[Scope::Service, Scope::Source(None)],
};

fn identifier_form(title: &str, instructions: &str) -> DataForm {
    DataForm {
        type_: DataFormType::Form,
        title: Some(title.to_owned()),
        instructions: Some(instructions.to_owned()),
        fields: vec![required(Field::text_single("identifier", ""), "Identifier")],
    }
}

fn done(title: &str, label: String) -> Stage {
    let mut result = Field::new("result", FieldType::Fixed).with_value("Success");
    result.label = Some(label);
    super::completed(title, vec![result])
}

#[async_trait]
impl AdHocCommand for Subscribe {
    fn spec(&self) -> &'static Spec {
        &SUBSCRIBE
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(identifier_form(
            "Subscribe",
            "Identifier of a series: urn:dev:<type>:<id>_<series path>. New readings are sent to your bare JID.",
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let identifier = super::required_value(input, "identifier")?;
        let (_, value, path) = parse_identifier(&identifier).ok_or_else(|| {
            RequestError::bad_request(format!(
                "identifier: {identifier:?} is not urn:dev:<type>:<id>_<series path>"
            ))
        })?;
        let target =
            history::authorize(ctx, req, value, path, "identifier", req.source_id()).await?;
        subscribe_within_limits(
            ctx,
            &req.requester,
            SubscriptionKind::Push,
            &target.usage_point.id,
            &target.series.path,
            req.requester.as_str(),
        )
        .await?;
        tracing::info!(jid = %req.requester, %identifier, "push subscription");
        Ok(done(
            "Subscribed",
            format!(
                "New readings of {identifier} will be sent to {}",
                req.requester
            ),
        ))
    }
}

#[async_trait]
impl AdHocCommand for Unsubscribe {
    fn spec(&self) -> &'static Spec {
        &UNSUBSCRIBE
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(identifier_form(
            "Unsubscribe",
            "Identifier of a series, or of a usage point (urn:dev:<type>:<id>) to stop all its series.",
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let identifier = super::required_value(input, "identifier")?;
        let (value, path) = match parse_identifier(&identifier) {
            Some((_, value, path)) => (value.to_owned(), Some(path.to_owned())),
            None => {
                let rest = identifier
                    .strip_prefix("urn:dev:")
                    .and_then(|r| r.split_once(':'));
                match rest {
                    Some((kind, value)) if !kind.is_empty() && !value.is_empty() && !value.contains('_') => {
                        (value.to_owned(), None)
                    }
                    _ => {
                        return Err(RequestError::bad_request(format!(
                            "identifier: {identifier:?} is neither urn:dev:<type>:<id> nor urn:dev:<type>:<id>_<series path>"
                        )))
                    }
                }
            }
        };
        let removed = ctx
            .store
            .unsubscribe(
                SubscriptionKind::Push,
                &value,
                path.as_deref(),
                req.requester.as_str(),
                None,
            )
            .await?;
        Ok(done(
            "Unsubscribed",
            format!(
                "{} subscription(s) of {} removed",
                removed.len(),
                req.requester
            ),
        ))
    }
}
