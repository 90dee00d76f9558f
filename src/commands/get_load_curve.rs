//! `get_load_curve` and `get_daily` (Quoalise generation 1, the 2020 reference document): a
//! usage point, a direction and a range of local dates, answered with the nested generation-1
//! `<meta>` and the reference titles and labels.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use super::get_history::required;
use super::history::{self, Presentation};

use super::time_range::{parse_date, Range};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::stanzas::quoalise::Generation;
use crate::time::paris::today;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};

const DIRECTIONS: [&str; 2] = ["consumption", "production"];

/// Which generation-1 product a command serves.
pub(crate) struct Gen1 {
    spec: &'static Spec,
    /// Series path after the direction.
    series: &'static str,
    /// `load curve`, `daily energy`: used in titles and labels.
    product: &'static str,
    /// Suffix of the SenML base name (`urn:dev:prm:<id>_<direction>_<suffix>`).
    name_suffix: &'static str,
}

static LOAD_CURVE: Spec = Spec {
    node: "get_load_curve",
    name: "Get load curve",
    access: Access::Anyone,
    scopes: &[Scope::Source(None)],
};

static DAILY: Spec = Spec {
    node: "get_daily",
    name: "Get daily energy",
    access: Access::Anyone,
    scopes: &[Scope::Source(None)],
};

pub(crate) const GET_LOAD_CURVE: Gen1 = Gen1 {
    spec: &LOAD_CURVE,
    series: "power/active/raw",
    product: "load curve",
    name_suffix: "load",
};

pub(crate) const GET_DAILY: Gen1 = Gen1 {
    spec: &DAILY,
    series: "energy/active/daily",
    product: "daily energy",
    name_suffix: "daily",
};

#[async_trait]
impl AdHocCommand for Gen1 {
    fn spec(&self) -> &'static Spec {
        self.spec
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let today = today();
        let yesterday = today.pred_opt().unwrap_or(today);
        let mut direction =
            Field::new("direction", FieldType::ListSingle).with_value("consumption");
        direction.options = DIRECTIONS
            .iter()
            .map(|d| Option_ {
                label: Some((*d).to_owned()),
                value: (*d).to_owned(),
            })
            .collect();
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some(format!("Get {}", self.product)),
            instructions: Some(
                "Dates are YYYY-MM-DD (Europe/Paris); the end date is excluded.".into(),
            ),
            fields: vec![
                required(Field::text_single("usage_point_id", ""), "Usage point"),
                required(direction, "Direction"),
                required(
                    Field::text_single("start_date", &yesterday.to_string()),
                    "Start date",
                ),
                required(
                    Field::text_single("end_date", &today.to_string()),
                    "End date",
                ),
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
        let usage_point = super::required_value(input, "usage_point_id")?;
        if !crate::model::is_valid_usage_point_id(&usage_point) {
            return Err(RequestError::bad_request(format!(
                "usage_point_id: {usage_point:?} is not a usage-point id"
            )));
        }
        let direction = input
            .single("direction")
            .unwrap_or_else(|| "consumption".into());
        if !DIRECTIONS.contains(&direction.as_str()) {
            return Err(RequestError::bad_request(format!(
                "direction: {direction:?} is neither consumption nor production"
            )));
        }
        let start = parse_date("start_date", &super::required_value(input, "start_date")?)?;
        let end = parse_date("end_date", &super::required_value(input, "end_date")?)?;
        let range = Range::new(start, end, "end_date")?;
        let source = req.source_id();
        let path = format!("{direction}/{}", self.series);
        let target =
            history::authorize(ctx, req, &usage_point, &path, "usage_point_id", source).await?;
        let presentation = Presentation {
            command: self.spec.node,
            generation: Generation::One,
            base_name: format!(
                "{}_{direction}_{}",
                target.usage_point.identifier.urn(),
                self.name_suffix
            ),
            title: format!("Get {direction} {} data", self.product),
            label: format!("{direction} {} for {usage_point}", self.product),
        };
        history::serve(ctx, req, &target, range, cursor, &presentation).await
    }
}
