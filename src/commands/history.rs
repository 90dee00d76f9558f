//! What every historical command shares: finding the series, checking the grant, reading a page
//! of readings that fits in one stanza, building the answer, writing the audit entry.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};

use crate::model::{AuditEntry, Reading, Series, UsagePoint};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::quoalise::{quoalise, Data, Generation, Meta};
use crate::stanzas::senml::{format_number, is_secondary_unit, Pack};
use crate::time::now;
use crate::xep::adhoc::{Outcome, Stage};

use super::time_range::Range;

/// Room kept in each stanza for everything but the SenML records (iq, command, form, meta).
const ENVELOPE: usize = 8 * 1024;
/// Rows fetched per store query while filling a page.
const FETCH: usize = 4096;

/// A series the requester may read, and the grant that allows it.
pub(crate) struct Target {
    pub(crate) usage_point: UsagePoint,
    pub(crate) series: Series,
    /// `None` for admins.
    pub(crate) grant_id: Option<i64>,
}

/// Resolves a usage point and series path for `req`, checking the grant first so that the
/// answer for an ungranted requester does not reveal whether the usage point exists.
pub(crate) async fn authorize(
    ctx: &Context,
    req: &Request,
    usage_point: &str,
    series: &str,
    field: &str,
    source: Option<&str>,
) -> Result<Target, RequestError> {
    if !req.view.may_read(usage_point, series) {
        return Err(RequestError::NotAuthorized(format!(
            "{field}: you have no grant for usage point {usage_point}, series {series}"
        )));
    }
    let grant_id = req.view.grant_for(usage_point, series).and_then(|g| g.id);
    let up = ctx
        .store
        .usage_point(usage_point)
        .await?
        .filter(|up| source.is_none_or(|s| up.source == s))
        .ok_or_else(|| {
            RequestError::bad_request(format!("{field}: unknown usage point {usage_point}"))
        })?;
    let series = ctx
        .store
        .series(usage_point)
        .await?
        .into_iter()
        .find(|s| s.path == series)
        .ok_or_else(|| {
            RequestError::bad_request(format!(
                "{field}: usage point {usage_point} has no series {series}"
            ))
        })?;
    Ok(Target {
        usage_point: up,
        series,
        grant_id,
    })
}

/// Splits a generation-2 series identifier, `urn:dev:<kind>:<value>_<series path>`.
pub(crate) fn parse_identifier(identifier: &str) -> Option<(&str, &str, &str)> {
    let rest = identifier.trim().strip_prefix("urn:dev:")?;
    let (kind, rest) = rest.split_once(':')?;
    let (value, path) = rest.split_once('_')?;
    (!kind.is_empty() && !value.is_empty() && !path.is_empty()).then_some((kind, value, path))
}

/// How the answer is labelled.
pub(crate) struct Presentation {
    pub(crate) command: &'static str,
    pub(crate) generation: Generation,
    /// SenML base name.
    pub(crate) base_name: String,
    /// Result form title and `result` field label.
    pub(crate) title: String,
    pub(crate) label: String,
}

/// Serves one page of `target` over `range`, starting at `cursor` (a unix time) if given.
pub(crate) async fn serve(
    ctx: &Context,
    req: &Request,
    target: &Target,
    range: Range,
    cursor: Option<&str>,
    presentation: &Presentation,
) -> Result<Stage, RequestError> {
    let start = match cursor {
        None => range.start,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|t| (range.start..range.end).contains(t))
            .ok_or_else(|| RequestError::bad_request("sessionid: corrupt paging state"))?,
    };
    if cursor.is_none() {
        // The first page fetches what the store lacks; later pages only read the store.
        if let Some(upstream) = ctx.upstreams.get(&target.usage_point.source) {
            upstream
                .ensure(
                    &target.usage_point.id,
                    &target.series.path,
                    range.start,
                    range.end,
                    req.requester.as_str(),
                )
                .await?;
        }
    }
    let budget = ctx.max_stanza_size.saturating_sub(ENVELOPE);
    let (readings, next) = read_page(ctx, target, start, range.end, budget, presentation).await?;

    ctx.store
        .append_audit(&AuditEntry {
            requester: req.requester.to_string(),
            usage_point: target.usage_point.id.clone(),
            series: target.series.path.clone(),
            start,
            end: next.unwrap_or(range.end),
            grant_id: target.grant_id,
            command: presentation.command.to_owned(),
            records: readings.len() as i64,
            at: now(),
        })
        .await?;

    let pairs: Vec<(i64, f64)> = readings.iter().map(|r| (r.time, r.value)).collect();
    let mut pack = Pack::from_readings(
        &presentation.base_name,
        &target.series.measurement.unit,
        &pairs,
    );
    if presentation.generation == Generation::One {
        // The 2020 reference answers carry an explicit t="0" on the first record.
        if let Some(first) = pack.records.first_mut() {
            first.t = Some(0.0);
        }
    }
    let data = Data {
        meta: Meta {
            device_type: target.usage_point.device_type.clone(),
            identifier: target.usage_point.identifier.clone(),
            measurement: target.series.measurement.clone(),
        },
        sensml: pack,
    };
    let mut result = Field::new("result", FieldType::Fixed).with_value("Success");
    result.label = Some(presentation.label.clone());
    // No FORM_TYPE: the reference answers have none.
    let form = DataForm {
        type_: DataFormType::Result_,
        title: Some(presentation.title.clone()),
        instructions: None,
        fields: vec![result],
    };
    let outcome = Outcome {
        form: Some(form.into()),
        payloads: vec![quoalise(&[data], presentation.generation)],
        notes: vec![],
    };
    Ok(match next {
        None => Stage::Done(outcome),
        Some(next) => Stage::More(outcome, next.to_string()),
    })
}

/// Reads readings from `start` until the page is full; returns them and where the next page
/// starts (`None` when the range is exhausted).
async fn read_page(
    ctx: &Context,
    target: &Target,
    start: i64,
    end: i64,
    budget: usize,
    presentation: &Presentation,
) -> Result<(Vec<Reading>, Option<i64>), RequestError> {
    let up = &target.usage_point.id;
    let path = &target.series.path;
    let unit = &target.series.measurement.unit;
    let mut page: Vec<Reading> = Vec::new();
    let mut size = 0usize;
    let mut from = start;
    loop {
        let chunk = ctx.store.readings(up, path, from, end, Some(FETCH)).await?;
        let full_chunk = chunk.len() == FETCH;
        for r in chunk {
            let cost = match page.first() {
                None => first_record_size(&presentation.base_name, unit, r),
                Some(first) => record_size(r.time - first.time, r.value),
            };
            if size + cost > budget {
                return Ok((page, Some(r.time)));
            }
            size += cost;
            from = r.time + 1;
            page.push(r);
        }
        if !full_chunk {
            return Ok((page, None));
        }
    }
}

/// Bytes of `<senml bn='…' bt='…' bu='…' bver='26' t='0' v='…'></senml>` as the stream writes
/// it (never the short `<senml/>` form), counted generously.
fn first_record_size(base_name: &str, unit: &str, r: Reading) -> usize {
    let bver = if is_secondary_unit(unit) { 10 } else { 0 };
    56 + base_name.len() * 2
        + unit.len()
        + bver
        + format_number(r.time as f64).len()
        + format_number(r.value).len()
}

/// Bytes of `<senml t='…' v='…'></senml>`.
fn record_size(offset: i64, value: f64) -> usize {
    28 + format_number(offset as f64).len() + format_number(value).len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    #[test]
    fn identifiers() {
        assert_eq!(
            parse_identifier("urn:dev:prm:30001610071843_consumption/power/active/raw"),
            Some(("prm", "30001610071843", "consumption/power/active/raw"))
        );
        assert_eq!(
            parse_identifier("urn:dev:uuid:0f1e-aa_temperature/raw"),
            Some(("uuid", "0f1e-aa", "temperature/raw"))
        );
        for bad in [
            "",
            "urn:dev:prm:123",
            "urn:dev:prm:_x",
            "prm:1_x",
            "urn:dev::1_x",
            "urn:dev:prm:1_",
        ] {
            assert_eq!(parse_identifier(bad), None, "{bad}");
        }
    }

    #[test]
    fn size_estimates_bound_the_real_output() {
        let base = "urn:dev:prm:30001610071843_consumption/power/active/raw";
        let readings: Vec<(i64, f64)> = (0..500)
            .map(|i| (1_790_632_800 + i * 1800, 1234.567 * i as f64))
            .collect();
        let mut pack = Pack::from_readings(base, "Wh", &readings);
        pack.records[0].t = Some(0.0);
        let real = xso::to_vec(&Element::from(&pack)).unwrap().len();
        let estimate: usize = first_record_size(
            base,
            "Wh",
            Reading {
                time: readings[0].0,
                value: readings[0].1,
            },
        ) + readings[1..]
            .iter()
            .map(|(t, v)| record_size(t - readings[0].0, *v))
            .sum::<usize>();
        assert!(
            estimate >= real - "<sensml xmlns='urn:ietf:params:xml:ns:senml'></sensml>".len(),
            "{estimate} < {real}"
        );
    }
}
