//! Grants at run time, for `[access] admins` (in the style of XEP-0133, on the service JID):
//! `admin-grants-list`, `admin-grant-add`, `admin-grant-revoke`.
//!
//! Grants made here are stored with origin `admin`; `[[access.grant]]` in the file is reconciled
//! at start and never touches them. A revocation ends the grantee's subscriptions at once on this
//! instance (and the store's change feed tells the other instances). Others do not see these
//! commands, and running one is refused (the engine checks `Access::Admin`).

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, Field, FieldType};

use super::admin_forms::{admin_grant, admin_spec, describe_grant, done, form, listing, number};
use super::get_history::required;
use crate::audit;
use crate::model::{audit_command, ANY};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{AdHocCommand, Spec, Stage};

pub(crate) struct ListGrants;
pub(crate) struct AddGrant;
pub(crate) struct RevokeGrant;

static LIST: Spec = admin_spec("admin-grants-list", "List grants (admin)");

static ADD: Spec = admin_spec("admin-grant-add", "Add a grant (admin)");

static REVOKE: Spec = admin_spec("admin-grant-revoke", "Revoke a grant (admin)");

#[async_trait]
impl AdHocCommand for ListGrants {
    fn spec(&self) -> &'static Spec {
        &LIST
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let mut jid = Field::new("jid", FieldType::JidSingle);
        jid.label = Some("Only the grants of this JID (empty: all)".into());
        Ok(form(
            "List grants",
            "Grants in force or expired, not revoked.",
            vec![jid],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let grants = match input.single("jid").filter(|j| !j.is_empty()) {
            Some(jid) => {
                let subject = admin_grant(&jid, ANY.into(), ANY.into(), None, None)?.subject;
                ctx.store.grants_for(&subject).await?
            }
            None => ctx.store.grants().await?,
        };
        Ok(listing(
            "Grants",
            "grants",
            grants.iter().map(describe_grant).collect(),
        ))
    }
}

#[async_trait]
impl AdHocCommand for AddGrant {
    fn spec(&self) -> &'static Spec {
        &ADD
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let mut until = Field::text_single("valid_until", "");
        until.label = Some("Expires (ISO 8601; empty: never)".into());
        let mut purpose = Field::text_single("purpose", "");
        purpose.label = Some("Purpose".into());
        Ok(form(
            "Add a grant",
            "Lets a JID read a usage point's series (* for all).",
            vec![
                required(
                    Field::new("jid", FieldType::JidSingle),
                    "Grantee (bare JID)",
                ),
                required(
                    Field::text_single("usage_point", ANY),
                    "Usage point id, or *",
                ),
                required(Field::text_single("series", ANY), "Series path, or *"),
                purpose,
                until,
            ],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let mut grant = admin_grant(
            &super::required_value(input, "jid")?,
            super::required_value(input, "usage_point")?,
            super::required_value(input, "series")?,
            input.single("purpose").filter(|p| !p.is_empty()),
            input
                .single("valid_until")
                .filter(|t| !t.is_empty())
                .as_deref(),
        )?;
        let id = ctx.store.add_grant(&grant).await?;
        grant.id = Some(id);
        audit::record(
            ctx.store.as_ref(),
            audit::grant_event(req.requester.as_str(), audit_command::GRANT_ADDED, &grant),
        )
        .await;
        tracing::info!(grant = id, subject = %grant.subject, usage_point = %grant.usage_point, series = %grant.series, "grant added by an admin");
        Ok(done(
            "Grant added",
            vec![Field::text_single("grant", &id.to_string())],
            &describe_grant(&grant),
        ))
    }
}

#[async_trait]
impl AdHocCommand for RevokeGrant {
    fn spec(&self) -> &'static Spec {
        &REVOKE
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        Ok(form(
            "Revoke a grant",
            "The grantee's subscriptions that no other grant covers end at once.",
            vec![required(
                Field::text_single("grant", ""),
                "Grant number (see admin-grants-list)",
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
        let id = number("grant", &super::required_value(input, "grant")?)?;
        let Some(grant) = ctx.store.revoke_grant(id).await? else {
            return Err(RequestError::bad_request(format!(
                "grant: no grant #{id} in force"
            )));
        };
        audit::record(
            ctx.store.as_ref(),
            audit::grant_event(req.requester.as_str(), audit_command::GRANT_REVOKED, &grant),
        )
        .await;
        tracing::info!(grant = id, "grant revoked by an admin");
        let ended = crate::publisher::expire_subscriptions(ctx).await?;
        Ok(done(
            "Grant revoked",
            vec![],
            &format!("Grant #{id} revoked; {ended} subscription(s) ended"),
        ))
    }
}
