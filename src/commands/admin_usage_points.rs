//! `admin-usage-points`, for `[access] admins` on the service JID: the usage points of one
//! source, or of all, with their state as the store knows it: source, online or not, name,
//! how many series, the grants in force that cover it (`*` grants included), the consents in
//! force on it, and the time of its last reading.
//!
//! Details cost a few store queries per usage point, so only the lines shown (at most
//! `MAX_LISTED`) are detailed; a source filter narrows a longer list.

use std::collections::HashMap;

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, Field, FieldType, Option_};

use super::admin_forms::{admin_spec, form, listing, MAX_LISTED};
use crate::model::UsagePoint;
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::xep::adhoc::{AdHocCommand, Spec, Stage};

pub(crate) struct ListUsagePoints;

static SPEC: Spec = admin_spec("admin-usage-points", "List usage points (admin)");

#[async_trait]
impl AdHocCommand for ListUsagePoints {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let mut source = Field::new("source", FieldType::ListSingle);
        source.label = Some("Only those of this source (empty: all)".into());
        source.options = ctx
            .sources
            .iter()
            .map(|s| Option_ {
                label: Some(s.title.clone()),
                value: s.id.clone(),
            })
            .collect();
        Ok(form(
            "List usage points",
            "id source online|offline \"name\" series grants consents last reading.",
            vec![source],
        ))
    }

    async fn run(
        &self,
        ctx: &Context,
        _req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let source = input.single("source");
        if let Some(id) = &source {
            if !ctx.sources.iter().any(|s| &s.id == id) {
                return Err(RequestError::bad_request(format!(
                    "source: no source {id:?}"
                )));
            }
        }
        let usage_points = ctx.store.usage_points(source.as_deref()).await?;
        let now = crate::time::now();
        let grants: Vec<_> = ctx
            .store
            .grants()
            .await?
            .into_iter()
            .filter(|g| g.is_valid_at(now))
            .collect();
        let mut consents: HashMap<String, usize> = HashMap::new();
        for source in ctx.consent_sources.keys() {
            for c in ctx.store.active_consents(source, now).await? {
                *consents.entry(c.usage_point).or_default() += 1;
            }
        }
        let mut lines = Vec::with_capacity(usage_points.len());
        for (shown, up) in usage_points.iter().enumerate() {
            if shown >= MAX_LISTED {
                // Cut by the listing anyway: counted, not detailed.
                lines.push(up.id.clone());
                continue;
            }
            let grants = grants
                .iter()
                .filter(|g| g.covers_usage_point(&up.id))
                .count();
            let consents = consents.get(&up.id).copied().unwrap_or(0);
            lines.push(describe(ctx, up, grants, consents).await?);
        }
        Ok(listing("Usage points", "usage_points", lines))
    }
}

/// `id source online|offline "name" series N grants N consents N last T|never`.
async fn describe(
    ctx: &Context,
    up: &UsagePoint,
    grants: usize,
    consents: usize,
) -> Result<String, RequestError> {
    let series = ctx.store.series(&up.id).await?;
    let mut last: Option<i64> = None;
    for s in &series {
        if let Some(r) = ctx.store.last_reading(&up.id, &s.path).await? {
            last = last.max(Some(r.time));
        }
    }
    let last = last.map_or_else(
        || "never".to_owned(),
        |t| crate::time::paris::rfc3339(t).unwrap_or_else(|| t.to_string()),
    );
    Ok(format!(
        "{} {} {} {:?} series {} grants {grants} consents {consents} last {last}",
        up.id,
        up.source,
        if up.online { "online" } else { "offline" },
        up.name,
        series.len(),
    ))
}
