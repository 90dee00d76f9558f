//! The ad-hoc commands (XEP-0050) the component offers; the engine is `crate::xep::adhoc`.
//!
//! Each command declares its node, name, access and where it is listed in a static [`Spec`],
//! builds its form and runs with the submitted values. Errors are `RequestError`s, mapped to
//! stanza errors in one place (`crate::request::error`).
//!
//! [`Spec`]: crate::xep::adhoc::Spec

use std::sync::Arc;

use crate::model::{Grant, UsagePoint};
use crate::request::error::RequestError;
use crate::request::{Request, Target};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{AdHocCommand, Outcome, Stage};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};

mod access_report;
mod admin_access;
mod admin_audit;
pub(crate) mod admin_forms;
mod admin_grants;
mod admin_usage_points;
pub(crate) mod export;
mod get_authorize_uri;
mod get_history;
mod get_load_curve;
mod history;
mod subscribe;
pub(crate) mod time_range;
mod usage_point_history;

/// The value of a field the command cannot run without.
fn required_value(input: &Submitted, var: &str) -> Result<String, RequestError> {
    input
        .single(var)
        .ok_or_else(|| RequestError::bad_request(format!("{var}: required")))
}

/// The usage point a data-subject command (`access_report`, `export`) runs on, and the grant
/// that makes the requester its data's holder (`crate::access::View::holder_grant`). Anyone
/// else who may see the usage point is `forbidden`: reading it under a config or admin grant,
/// or administering the component, is not speaking for the customer.
fn holder<'r>(
    req: &'r Request,
    command: &str,
) -> Result<(&'r UsagePoint, &'r Grant), RequestError> {
    let Target::UsagePoint(up) = &req.target else {
        return Err(RequestError::ItemNotFound);
    };
    let grant = req.view.holder_grant(&up.id).ok_or_else(|| {
        RequestError::Forbidden(format!(
            "{command}: only the holder of a consent or an owner grant on usage point {} may \
             run it",
            up.id
        ))
    })?;
    Ok((up, grant))
}

/// A command's last stage: a result form with these fields, and nothing else.
fn completed(title: &str, fields: Vec<Field>) -> Stage {
    Stage::Done(Outcome {
        form: Some(
            DataForm {
                type_: DataFormType::Result_,
                title: Some(title.to_owned()),
                instructions: None,
                fields,
            }
            .into(),
        ),
        payloads: vec![],
        notes: vec![],
    })
}

/// Every command, in the order discovery lists them.
pub fn all() -> Vec<Arc<dyn AdHocCommand>> {
    vec![
        Arc::new(get_history::GetHistory),
        Arc::new(get_load_curve::GET_LOAD_CURVE),
        Arc::new(get_load_curve::GET_DAILY),
        Arc::new(subscribe::Subscribe),
        Arc::new(subscribe::Unsubscribe),
        Arc::new(usage_point_history::History),
        Arc::new(export::Export),
        Arc::new(get_authorize_uri::GetAuthorizeUri),
        Arc::new(access_report::AccessReport),
        Arc::new(admin_grants::ListGrants),
        Arc::new(admin_grants::AddGrant),
        Arc::new(admin_grants::RevokeGrant),
        Arc::new(admin_access::ListConsents),
        Arc::new(admin_access::RevokeConsents),
        Arc::new(admin_access::ListSubscriptions),
        Arc::new(admin_access::EndSubscription),
        Arc::new(admin_usage_points::ListUsagePoints),
        Arc::new(admin_audit::ShowAudit),
    ]
}
