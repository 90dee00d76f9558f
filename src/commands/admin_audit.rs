//! `admin-audit`, for `[access] admins` on the service JID: the audit log of a usage point or of
//! a requester (or of a requester on one usage point) over a time range, paged like history.
//! The pages are those of the access report (`access_report::audit_page`), every requester's
//! entries included.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, Field, FieldType};

use super::access_report::{audit_page, range, range_fields};
use super::admin_forms::{admin_spec, audit_filter, form};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{AdHocCommand, Spec, Stage};

pub(crate) struct ShowAudit;

static SPEC: Spec = admin_spec("admin-audit", "Show the audit log (admin)");

#[async_trait]
impl AdHocCommand for ShowAudit {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let mut usage_point = Field::text_single("usage_point", "");
        usage_point.label = Some("Usage point id".into());
        let mut requester = Field::new("requester", FieldType::JidSingle);
        requester.label = Some("Requester (bare JID)".into());
        let mut fields = vec![usage_point, requester];
        fields.extend(range_fields());
        Ok(form(
            "Audit log",
            "Entries of a usage point, of a requester, or of both (at least one), appended in \
             [start, end). Times: ISO 8601 with offset, or YYYY-MM-DD.",
            fields,
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        _req: &Request,
        input: &Submitted,
        cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let range = range(input)?;
        let filter = audit_filter(
            input.single("usage_point"),
            input.single("requester"),
            range.start,
            range.end,
        )?;
        audit_page(ctx, &filter, cursor, "Audit log").await
    }
}
