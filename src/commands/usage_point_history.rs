//! `history` on a usage-point JID: pick one of its series and a range. Friendlier for humans in
//! Gajim-like clients than typing a series identifier.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use super::get_history::required;
use super::history::{self, Presentation};
use super::time_range::{default_instants, parse_instant, Range};
use crate::request::error::RequestError;
use crate::request::{Context, Request, Target};
use crate::stanzas::form::Submitted;
use crate::stanzas::quoalise::Generation;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};

pub(crate) struct History;

static SPEC: Spec = Spec {
    node: "history",
    name: "History",
    access: Access::Anyone,
    scopes: &[Scope::UsagePoint],
};

#[async_trait]
impl AdHocCommand for History {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, ctx: &Context, req: &Request) -> Result<DataForm, RequestError> {
        let Target::UsagePoint(up) = &req.target else {
            return Err(RequestError::ItemNotFound);
        };
        let series: Vec<_> = ctx
            .store
            .series(&up.id)
            .await?
            .into_iter()
            .filter(|s| req.view.may_read(&up.id, &s.path))
            .collect();
        let default = series
            .iter()
            .find(|s| s.path.ends_with("/raw"))
            .or(series.first())
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let mut field = Field::new("series", FieldType::ListSingle).with_value(&default);
        field.options = series
            .iter()
            .map(|s| Option_ {
                label: Some(s.title.clone()),
                value: s.path.clone(),
            })
            .collect();
        let (start, end) = default_instants(1);
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some(format!("History of {}", up.name)),
            instructions: Some(
                "Times: ISO 8601 with offset, or YYYY-MM-DD; the range is [start, end).".into(),
            ),
            fields: vec![
                required(field, "Series"),
                required(Field::text_single("start", &start), "Start (included)"),
                required(Field::text_single("end", &end), "End (excluded)"),
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
        let Target::UsagePoint(up) = &req.target else {
            return Err(RequestError::ItemNotFound);
        };
        let path = super::required_value(input, "series")?;
        let (default_start, default_end) = default_instants(1);
        let start = parse_instant("start", &input.single("start").unwrap_or(default_start))?;
        let end = parse_instant("end", &input.single("end").unwrap_or(default_end))?;
        let range = Range::new(start, end, "end")?;
        let target = history::authorize(ctx, req, &up.id, &path, "series", None).await?;
        let presentation = Presentation {
            command: SPEC.node,
            generation: Generation::Two,
            base_name: target.series.identifier(&target.usage_point),
            title: format!("History of {}", target.usage_point.name),
            label: format!("{} for {}", target.series.title, target.usage_point.id),
        };
        history::serve(ctx, req, &target, range, cursor, &presentation).await
    }
}
