//! Consents and subscriptions at run time, for `[access] admins` (on the service JID, next to
//! the grant commands of `admin_grants`): `admin-consents-list`, `admin-consent-revoke`,
//! `admin-subscriptions-list`, `admin-subscription-end`.
//!
//! Revoking a usage point's consents revokes their grants with them (as when the provider says
//! the customer withdrew), so the subscriptions they allowed end at once; ending one
//! subscription sends its subscriber the usual notice.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, Field};

use super::get_history::required;
use crate::audit;
use crate::model::{audit_command, Subscription};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{AdHocCommand, Spec, Stage};

use super::admin_forms::{
    admin_spec, describe_consent, done, form, listing, number, usage_point_id,
};

pub(crate) struct ListConsents;
pub(crate) struct RevokeConsents;
pub(crate) struct ListSubscriptions;
pub(crate) struct EndSubscription;

static LIST_CONSENTS: Spec = admin_spec("admin-consents-list", "List consents (admin)");

static REVOKE_CONSENTS: Spec = admin_spec(
    "admin-consent-revoke",
    "Revoke a usage point's consents (admin)",
);

static LIST_SUBSCRIPTIONS: Spec =
    admin_spec("admin-subscriptions-list", "List subscriptions (admin)");

static END_SUBSCRIPTION: Spec = admin_spec("admin-subscription-end", "End a subscription (admin)");

fn filter(label: &str) -> Field {
    let mut f = Field::text_single("filter", "");
    f.label = Some(label.to_owned());
    f
}

fn describe_subscription(s: &Subscription) -> String {
    format!(
        "#{} {} {} {} {}",
        s.id,
        s.usage_point,
        s.series,
        s.jid,
        s.kind.as_str()
    )
}

#[async_trait]
impl AdHocCommand for ListConsents {
    fn spec(&self) -> &'static Spec {
        &LIST_CONSENTS
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(form(
            "List consents",
            "Consents in force, of every source that takes them.",
            vec![filter(
                "Only those of this usage point or application JID (empty: all)",
            )],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let wanted = input.single("filter").filter(|f| !f.is_empty());
        let now = crate::time::now();
        let mut lines = Vec::new();
        for source in ctx.consent_sources.keys() {
            for c in ctx.store.active_consents(source, now).await? {
                let shown = wanted
                    .as_deref()
                    .is_none_or(|w| c.usage_point == w || c.app_jid == w);
                if shown {
                    lines.push(describe_consent(&c));
                }
            }
        }
        Ok(listing("Consents", "consents", lines))
    }
}

#[async_trait]
impl AdHocCommand for RevokeConsents {
    fn spec(&self) -> &'static Spec {
        &REVOKE_CONSENTS
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(form(
            "Revoke consents",
            "Revokes every consent in force on the usage point, and the grants they gave: the \
             subscriptions they allowed end at once.",
            vec![required(
                Field::text_single("usage_point", ""),
                "Usage point id",
            )],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let usage_point = super::required_value(input, "usage_point")?;
        usage_point_id(&usage_point)?;
        let revoked = ctx.store.revoke_consents(&usage_point).await?;
        if revoked.is_empty() {
            return Err(RequestError::bad_request(format!(
                "usage_point: no consent in force on {usage_point}"
            )));
        }
        tracing::info!(%usage_point, consents = revoked.len(), "consents revoked by an admin");
        audit::record_all(
            ctx.store.as_ref(),
            &audit::consents_ended(req.requester.as_str(), &revoked),
        )
        .await;
        let ended = crate::publisher::expire_subscriptions(ctx).await?;
        Ok(done(
            "Consents revoked",
            vec![],
            &format!(
                "{} consent(s) on {usage_point} revoked; {ended} subscription(s) ended",
                revoked.len()
            ),
        ))
    }
}

#[async_trait]
impl AdHocCommand for ListSubscriptions {
    fn spec(&self) -> &'static Spec {
        &LIST_SUBSCRIPTIONS
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(form(
            "List subscriptions",
            "PubSub and push subscriptions: #id usage-point series subscriber kind.",
            vec![filter(
                "Only those of this usage point or subscriber bare JID (empty: all)",
            )],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let wanted = input.single("filter").filter(|f| !f.is_empty());
        let lines = ctx
            .store
            .all_subscriptions()
            .await?
            .iter()
            .filter(|s| {
                wanted.as_deref().is_none_or(|w| {
                    s.usage_point == w || crate::publisher::bare_of(&s.jid).as_deref() == Some(w)
                })
            })
            .map(describe_subscription)
            .collect();
        Ok(listing("Subscriptions", "subscriptions", lines))
    }
}

#[async_trait]
impl AdHocCommand for EndSubscription {
    fn spec(&self) -> &'static Spec {
        &END_SUBSCRIPTION
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(form(
            "End a subscription",
            "The subscriber is told its subscription ended.",
            vec![required(
                Field::text_single("subscription", ""),
                "Subscription number (see admin-subscriptions-list)",
            )],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let text = super::required_value(input, "subscription")?;
        let id = number("subscription", &text)?;
        let Some(subscription) = ctx.store.subscription(id).await? else {
            return Err(RequestError::bad_request(format!(
                "subscription: no subscription #{id}"
            )));
        };
        crate::publisher::end_subscription(ctx, id, "ended by an administrator").await?;
        tracing::info!(subscription = id, "subscription ended by an admin");
        audit::record(
            ctx.store.as_ref(),
            audit::event(
                req.requester.as_str(),
                audit_command::SUBSCRIPTION_ENDED,
                &subscription.usage_point,
                &subscription.series,
                None,
                id,
            ),
        )
        .await;
        Ok(done(
            "Subscription ended",
            vec![],
            &format!("Subscription #{id} ended; its subscriber was told"),
        ))
    }
}
