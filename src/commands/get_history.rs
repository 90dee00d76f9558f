//! `get_history` (Quoalise generation 2): a series by identifier over a time range.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};

use super::history::{self, parse_identifier, Presentation};
use super::time_range::{default_instants, parse_instant, Range};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::stanzas::quoalise::Generation;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};

pub(crate) struct GetHistory;

static SPEC: Spec = Spec {
    node: "get_history",
    name: "Get history",
    access: Access::Anyone,
    scopes: &[Scope::Service, Scope::Source(None)],
};

#[async_trait]
impl AdHocCommand for GetHistory {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let (start, end) = default_instants(1);
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some("Get history".into()),
            instructions: Some(
                "Identifier: urn:dev:<type>:<id>_<series>. Times: ISO 8601 with offset, or YYYY-MM-DD; the range is [start, end).".into(),
            ),
            fields: vec![
                required(Field::text_single("identifier", ""), "Series identifier"),
                required(Field::text_single("start_time", &start), "Start (included)"),
                required(Field::text_single("end_time", &end), "End (excluded)"),
            ],
        })
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let identifier = super::required_value(input, "identifier")?;
        let (kind, value, path) = parse_identifier(&identifier).ok_or_else(|| {
            RequestError::bad_request(format!(
                "identifier: {identifier:?} is not urn:dev:<type>:<id>_<series path>"
            ))
        })?;
        let (default_start, default_end) = default_instants(1);
        let end = parse_instant("end_time", &input.single("end_time").unwrap_or(default_end))?;
        let start = match input.single("start_time") {
            Some(text) => parse_instant("start_time", &text)?,
            None => parse_instant("start_time", &default_start)?.min(end - 86_400),
        };
        let range = Range::new(start, end, "end_time")?;
        let source = req.source_id();
        let target = history::authorize(ctx, req, value, path, "identifier", source).await?;
        if target.usage_point.identifier.kind != kind {
            return Err(RequestError::bad_request(format!(
                "identifier: usage point {value} is not of type {kind}"
            )));
        }
        let presentation = Presentation {
            command: SPEC.node,
            generation: Generation::Two,
            base_name: target.series.identifier(&target.usage_point),
            title: "History".into(),
            label: format!("{} for {}", target.series.title, target.usage_point.id),
        };
        history::serve(ctx, req, &target, range, cursor, &presentation).await
    }
}

pub(super) fn required(mut field: Field, label: &str) -> Field {
    field.required = true;
    field.label = Some(label.to_owned());
    field
}
