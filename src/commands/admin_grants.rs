//! Grants at run time, for `[access] admins` (in the style of XEP-0133, on the service JID):
//! `admin-grants-list`, `admin-grant-add`, `admin-grant-revoke`.
//!
//! Grants made here are stored with origin `admin`; `[[access.grant]]` in the file is reconciled
//! at start and never touches them. A revocation ends the grantee's subscriptions at once on this
//! instance (and the store's change feed tells the other instances). Others do not see these
//! commands, and running one is refused (the engine checks `Access::Admin`).

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::BareJid;

use super::get_history::required;
use super::time_range::parse_instant;
use crate::model::{Grant, GrantOrigin, ANY};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};

pub(crate) struct ListGrants;
pub(crate) struct AddGrant;
pub(crate) struct RevokeGrant;

static LIST: Spec = Spec {
    node: "admin-grants-list",
    name: "List grants (admin)",
    access: Access::Admin,
    scopes: &[Scope::Service],
};

static ADD: Spec = Spec {
    node: "admin-grant-add",
    name: "Add a grant (admin)",
    access: Access::Admin,
    scopes: &[Scope::Service],
};

static REVOKE: Spec = Spec {
    node: "admin-grant-revoke",
    name: "Revoke a grant (admin)",
    access: Access::Admin,
    scopes: &[Scope::Service],
};

/// Most grants one listing shows; the filter narrows a longer list.
const MAX_LISTED: usize = 500;

fn form(title: &str, instructions: &str, fields: Vec<Field>) -> DataForm {
    DataForm {
        type_: DataFormType::Form,
        title: Some(title.to_owned()),
        instructions: Some(instructions.to_owned()),
        fields,
    }
}

/// One line per grant: `#id jid usage-point series origin [until …] [purpose]`.
pub(crate) fn describe(grant: &Grant) -> String {
    let mut line = format!(
        "#{} {} {} {} {}",
        grant.id.unwrap_or_default(),
        grant.subject,
        grant.usage_point,
        grant.series,
        grant.origin.as_str()
    );
    if let Some(until) = grant.valid_until {
        let until = crate::time::paris::rfc3339(until).unwrap_or_else(|| until.to_string());
        line.push_str(&format!(" until {until}"));
    }
    if let Some(purpose) = &grant.purpose {
        line.push_str(&format!(" purpose: {purpose}"));
    }
    line
}

fn bare_jid(var: &str, text: &str) -> Result<String, RequestError> {
    text.parse::<BareJid>()
        .ok()
        .filter(|j| j.node().is_some())
        .map(|j| j.to_string())
        .ok_or_else(|| RequestError::bad_request(format!("{var}: {text:?} is not a bare JID")))
}

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
            Some(jid) => ctx.store.grants_for(&bare_jid("jid", &jid)?).await?,
            None => ctx.store.grants().await?,
        };
        let total = grants.len();
        let mut lines = Field::new("grants", FieldType::TextMulti);
        lines.label = Some(format!("{total} grant(s)"));
        lines.values = grants.iter().take(MAX_LISTED).map(describe).collect();
        let mut fields = vec![lines];
        if total > MAX_LISTED {
            fields.push(
                Field::new("truncated", FieldType::Fixed).with_value(&format!(
                    "{MAX_LISTED} of {total} shown: filter by JID to see the others"
                )),
            );
        }
        Ok(super::completed("Grants", fields))
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
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let subject = bare_jid("jid", &super::required_value(input, "jid")?)?;
        let usage_point = super::required_value(input, "usage_point")?;
        if usage_point != ANY && !crate::model::is_valid_usage_point_id(&usage_point) {
            return Err(RequestError::bad_request(format!(
                "usage_point: {usage_point:?} is neither * nor a usage point id"
            )));
        }
        let series = super::required_value(input, "series")?;
        let valid_until = match input.single("valid_until").filter(|t| !t.is_empty()) {
            Some(text) => Some(parse_instant("valid_until", &text)?),
            None => None,
        };
        let purpose = input.single("purpose").filter(|p| !p.is_empty());
        let grant = Grant {
            id: None,
            subject,
            usage_point,
            series,
            valid_from: None,
            valid_until,
            origin: GrantOrigin::Admin,
            purpose,
        };
        let id = ctx.store.add_grant(&grant).await?;
        tracing::info!(grant = id, subject = %grant.subject, usage_point = %grant.usage_point, series = %grant.series, "grant added by an admin");
        let grant = Grant {
            id: Some(id),
            ..grant
        };
        Ok(super::completed(
            "Grant added",
            vec![Field::text_single("grant", &id.to_string()), {
                let mut f = Field::new("result", FieldType::Fixed).with_value(&describe(&grant));
                f.label = Some("Added".into());
                f
            }],
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
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let text = super::required_value(input, "grant")?;
        let id: i64 =
            text.trim().trim_start_matches('#').parse().map_err(|_| {
                RequestError::bad_request(format!("grant: {text:?} is not a number"))
            })?;
        if !ctx.store.revoke_grant(id).await? {
            return Err(RequestError::bad_request(format!(
                "grant: no grant #{id} in force"
            )));
        }
        tracing::info!(grant = id, "grant revoked by an admin");
        let ended = crate::publisher::expire_subscriptions(ctx).await?;
        let mut f = Field::new("result", FieldType::Fixed).with_value(&format!(
            "Grant #{id} revoked; {ended} subscription(s) ended"
        ));
        f.label = Some("Revoked".into());
        Ok(super::completed("Grant revoked", vec![f]))
    }
}
