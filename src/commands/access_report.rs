//! `access_report` on a usage point's JID: what the audit log says about the usage point's data
//! (who read which series, when, with which command, how many records, under which grant, its
//! origin and purpose), over a time range. The data subject's right of access: only a holder of
//! the usage point (a consent or a source's owners list, `View::holder_grant`) may ask; an
//! application that reads under a grant an admin gave is refused.
//!
//! The pages are shared with `admin-audit` ([`audit_page`]): a result form with a
//! `<reported>`/`<item>` table (XEP-0004) for people, and the same rows as JSON in
//! `<json xmlns='urn:xmpp:json:0'>` (XEP-0335) for programs, cut below the stanza limit and
//! paged like history (`next`, state in the ad-hoc session, the cursor the last id shown).

use async_trait::async_trait;
use minidom::Element;
use serde_json::json;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};

use super::get_history::required;
use super::time_range::{parse_instant, Range};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::{table_item, with_table, Columns, Submitted};
use crate::stanzas::ns;
use crate::store::{AuditFilter, AuditRecord};
use crate::xep::adhoc::{Access, AdHocCommand, Outcome, Scope, Spec, Stage};

pub(crate) struct AccessReport;

static SPEC: Spec = Spec {
    node: "access_report",
    name: "Access report",
    access: Access::Anyone,
    scopes: &[Scope::UsagePoint],
};

/// The table's columns, in the order of each row's values ([`row`]).
const COLUMNS: &Columns = &[
    ("id", "Entry"),
    ("at", "When"),
    ("requester", "Who"),
    ("usage_point", "Usage point"),
    ("series", "Series"),
    ("start", "Data from"),
    ("end", "Data until"),
    ("command", "What"),
    ("records", "Records"),
    ("grant", "Grant"),
    ("origin", "Grant origin"),
    ("purpose", "Purpose"),
];

/// The range a form proposes: the last 30 days, and the next minute, so that the reads of this
/// very second are in (the range excludes its end).
const DEFAULT_DAYS: i64 = 30;
const DEFAULT_AHEAD: i64 = 60;
/// Most entries one page shows, before the stanza limit cuts it shorter.
const PAGE: usize = 200;
/// Room kept in each stanza for everything but the rows (iq, command, form, header, JSON frame).
const ENVELOPE: usize = 8 * 1024;
/// Longest purpose shown, in characters: a consent's purpose is the text of its page, and one
/// row must stay well below the smallest stanza limit.
const PURPOSE_CHARS: usize = 500;

#[async_trait]
impl AdHocCommand for AccessReport {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, _ctx: &Context, req: &Request) -> Result<DataForm, RequestError> {
        let usage_point = super::holder(req, "access_report")?.0.id.as_str();
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some(format!("Access report of {usage_point}")),
            instructions: Some(
                "Who read this usage point's data, when and under which grant, from the audit \
                 log. Times: ISO 8601 with offset, or YYYY-MM-DD; the range is [start, end)."
                    .into(),
            ),
            fields: range_fields(),
        })
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let usage_point = super::holder(req, "access_report")?.0.id.as_str();
        let range = range(input)?;
        let filter = AuditFilter {
            usage_point: Some(usage_point.to_owned()),
            requester: None,
            from: range.start,
            to: range.end,
        };
        audit_page(
            ctx,
            &filter,
            cursor,
            &format!("Access report of {usage_point}"),
        )
        .await
    }
}

/// The default `[start, end)`, formatted as the form shows it.
fn default_range() -> (String, String) {
    let now = crate::time::now();
    (
        instant(now.saturating_sub(DEFAULT_DAYS * 86_400)),
        instant(now.saturating_add(DEFAULT_AHEAD)),
    )
}

/// The `start` and `end` fields, the last [`DEFAULT_DAYS`] days proposed.
pub(super) fn range_fields() -> Vec<Field> {
    let (start, end) = default_range();
    vec![
        required(Field::text_single("start", &start), "Start (included)"),
        required(Field::text_single("end", &end), "End (excluded)"),
    ]
}

/// The submitted range, `[start, end)`; a missing bound is the form's default.
pub(super) fn range(input: &Submitted) -> Result<Range, RequestError> {
    let (default_start, default_end) = default_range();
    let start = parse_instant("start", &input.single("start").unwrap_or(default_start))?;
    let end = parse_instant("end", &input.single("end").unwrap_or(default_end))?;
    Range::new(start, end, "end")
}

/// One page of the entries of `filter` after `cursor` (the last id of the page before), as a
/// table and as JSON, cut so that the answer fits in one stanza.
pub(super) async fn audit_page(
    ctx: &Context,
    filter: &AuditFilter,
    cursor: Option<&str>,
    title: &str,
) -> Result<Stage, RequestError> {
    let after = match cursor {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| RequestError::bad_request("sessionid: corrupt paging state"))?,
    };
    // One more than a page: whether more follow is known without another query.
    let records = ctx.store.find_audit(filter, after, PAGE + 1).await?;
    let budget = ctx.max_stanza_size.saturating_sub(ENVELOPE);
    let (mut items, mut entries, mut size) = (Vec::new(), Vec::new(), 0usize);
    let mut next = None;
    for (shown, record) in records.iter().enumerate() {
        let item = table_item(COLUMNS, &row(record));
        let entry = entry_json(record);
        // The item as xso writes it on the stream (as the link measures stanzas), and the JSON
        // escaped as the text of `<json/>`.
        let item_size = xso::to_vec(&item).map_or(usize::MAX, |b| b.len());
        let cost = item_size
            .saturating_add(crate::stanzas::xml::escape(&entry.to_string()).len())
            .saturating_add(1);
        let full = shown == PAGE || (!items.is_empty() && size + cost > budget);
        if full {
            next = records.get(shown.wrapping_sub(1)).map(|r| r.id);
            break;
        }
        size += cost;
        items.push(item);
        entries.push(entry);
    }
    let count = items.len();
    let document = json!({
        "usage_point": filter.usage_point,
        "requester": filter.requester,
        "from": instant(filter.from),
        "to": instant(filter.to),
        "more": next.is_some(),
        "entries": entries,
    });
    let mut result = Field::new("result", FieldType::Fixed).with_value(&match next {
        None => format!("{count} entries"),
        Some(_) => format!("{count} entries; more follow (next)"),
    });
    result.label = Some(title.to_owned());
    let form = DataForm {
        type_: DataFormType::Result_,
        title: Some(title.to_owned()),
        instructions: None,
        fields: vec![result],
    };
    let outcome = Outcome {
        form: Some(with_table(form, COLUMNS, items)),
        payloads: vec![Element::builder("json", ns::JSON)
            .append(document.to_string())
            .build()],
        notes: vec![],
    };
    Ok(match next {
        None => Stage::Done(outcome),
        Some(last) => Stage::More(outcome, last.to_string()),
    })
}

/// An instant as the views write it: RFC 3339 in Paris time (a number when out of range).
fn instant(t: i64) -> String {
    crate::time::paris::rfc3339(t).unwrap_or_else(|| t.to_string())
}

/// A purpose cut to [`PURPOSE_CHARS`].
fn purpose(text: &str) -> String {
    match text.char_indices().nth(PURPOSE_CHARS) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A record's values in [`COLUMNS`] order.
fn row(r: &AuditRecord) -> Vec<String> {
    let e = &r.entry;
    let (origin, purpose_text) = match &r.grant {
        Some((origin, p)) => (origin.as_str(), p.as_deref().map(purpose)),
        None => ("", None),
    };
    vec![
        r.id.to_string(),
        instant(e.at),
        e.requester.clone(),
        e.usage_point.clone(),
        e.series.clone(),
        instant(e.start),
        instant(e.end),
        e.command.clone(),
        e.records.to_string(),
        e.grant_id.map(|g| g.to_string()).unwrap_or_default(),
        origin.to_owned(),
        purpose_text.unwrap_or_default(),
    ]
}

/// A record as a JSON object; `grant` is `null` for an access under no grant (an admin's).
fn entry_json(r: &AuditRecord) -> serde_json::Value {
    let e = &r.entry;
    let grant = match (e.grant_id, &r.grant) {
        (Some(id), Some((origin, p))) => json!({
            "id": id,
            "origin": origin.as_str(),
            "purpose": p.as_deref().map(purpose),
        }),
        (Some(id), None) => json!({ "id": id }),
        (None, _) => serde_json::Value::Null,
    };
    json!({
        "id": r.id,
        "at": instant(e.at),
        "requester": e.requester,
        "usage_point": e.usage_point,
        "series": e.series,
        "start": instant(e.start),
        "end": instant(e.end),
        "command": e.command,
        "records": e.records,
        "grant": grant,
    })
}
