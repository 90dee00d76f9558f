//! What the admin commands (`admin_grants`, `admin_access`, `admin_audit`,
//! `admin_usage_points`) and the `admin` command line share: their forms and results, listings
//! cut at [`MAX_LISTED`] lines, numbers given as `#12` or `12`, and the one way a grant made by
//! an admin, and the audit entries an admin asks for, are checked.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::BareJid;

use crate::model::{Consent, Grant, GrantOrigin, ANY};
use crate::request::error::RequestError;
use crate::store::AuditFilter;
use crate::xep::adhoc::{Access, Scope, Spec, Stage};

/// The spec of an admin command: on the service JID, for `[access] admins` only.
pub(super) const fn admin_spec(node: &'static str, name: &'static str) -> Spec {
    Spec {
        node,
        name,
        access: Access::Admin,
        scopes: &[Scope::Service],
    }
}

/// Most lines one listing shows; a filter narrows a longer list.
pub(super) const MAX_LISTED: usize = 500;

/// A command's form.
pub(super) fn form(title: &str, instructions: &str, fields: Vec<Field>) -> DataForm {
    DataForm {
        type_: DataFormType::Form,
        title: Some(title.to_owned()),
        instructions: Some(instructions.to_owned()),
        fields,
    }
}

/// A listing as a result: one `text-multi` field `var` of lines, and a note when cut.
pub(super) fn listing(title: &str, var: &str, lines: Vec<String>) -> Stage {
    let total = lines.len();
    let mut field = Field::new(var, FieldType::TextMulti);
    field.label = Some(format!("{total} {var}"));
    field.values = lines.into_iter().take(MAX_LISTED).collect();
    let mut fields = vec![field];
    if total > MAX_LISTED {
        fields.push(
            Field::new("truncated", FieldType::Fixed).with_value(&format!(
                "{MAX_LISTED} of {total} shown: use a filter to see the others"
            )),
        );
    }
    super::completed(title, fields)
}

/// A one-line result, labelled `title`, plus `extra` fields first.
pub(super) fn done(title: &str, extra: Vec<Field>, text: &str) -> Stage {
    let mut f = Field::new("result", FieldType::Fixed).with_value(text);
    f.label = Some(title.to_owned());
    let mut fields = extra;
    fields.push(f);
    super::completed(title, fields)
}

/// A row number as an admin types it: `12` or `#12`.
pub(super) fn number(var: &str, text: &str) -> Result<i64, RequestError> {
    text.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| RequestError::bad_request(format!("{var}: {text:?} is not a number")))
}

/// A grant an admin asks for, checked: a bare JID with a localpart, `*` or a usage point id,
/// an expiry in ISO 8601 if any. Errors name the field (`jid`, `usage_point`, `valid_until`).
pub(crate) fn admin_grant(
    jid: &str,
    usage_point: String,
    series: String,
    purpose: Option<String>,
    valid_until: Option<&str>,
) -> Result<Grant, RequestError> {
    let subject = jid
        .parse::<BareJid>()
        .ok()
        .filter(|j| j.node().is_some())
        .map(|j| j.to_string())
        .ok_or_else(|| RequestError::bad_request(format!("jid: {jid:?} is not a bare JID")))?;
    if usage_point != ANY && !crate::model::is_valid_usage_point_id(&usage_point) {
        return Err(RequestError::bad_request(format!(
            "usage_point: {usage_point:?} is neither * nor a usage point id"
        )));
    }
    let valid_until = valid_until
        .map(|t| super::time_range::parse_instant("valid_until", t))
        .transpose()?;
    Ok(Grant {
        id: None,
        subject,
        usage_point,
        series,
        valid_from: None,
        valid_until,
        origin: GrantOrigin::Admin,
        purpose,
    })
}

/// One line per grant: `#id jid usage-point series origin [until …] [purpose: …]`.
pub(crate) fn describe_grant(grant: &Grant) -> String {
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

/// `text` if it is a usage point id; the error names the field `usage_point`.
pub(crate) fn usage_point_id(text: &str) -> Result<&str, RequestError> {
    if crate::model::is_valid_usage_point_id(text) {
        Ok(text)
    } else {
        Err(RequestError::bad_request(format!(
            "usage_point: {text:?} is not a usage point id"
        )))
    }
}

/// The entries an admin asks for, checked: a usage point id and/or a bare JID, at least one.
/// Errors name the field.
pub(crate) fn audit_filter(
    usage_point: Option<String>,
    requester: Option<String>,
    from: i64,
    to: i64,
) -> Result<AuditFilter, RequestError> {
    if usage_point.is_none() && requester.is_none() {
        return Err(RequestError::bad_request(
            "usage_point, requester: give at least one",
        ));
    }
    if let Some(up) = &usage_point {
        usage_point_id(up)?;
    }
    let requester = requester
        .map(|jid| {
            jid.parse::<BareJid>().map(|j| j.to_string()).map_err(|_| {
                RequestError::bad_request(format!("requester: {jid:?} is not a bare JID"))
            })
        })
        .transpose()?;
    Ok(AuditFilter {
        usage_point,
        requester,
        from,
        to,
    })
}

/// One line per consent: `#id source usage-point for app until … purpose: …`.
pub(crate) fn describe_consent(c: &Consent) -> String {
    let until =
        crate::time::paris::rfc3339(c.expires_at).unwrap_or_else(|| c.expires_at.to_string());
    format!(
        "#{} {} {} for {} until {until} purpose: {}",
        c.id.unwrap_or_default(),
        c.source,
        c.usage_point,
        c.app_jid,
        c.purpose
    )
}
