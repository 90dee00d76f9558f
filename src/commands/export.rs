//! `export` on a usage-point JID: the data subject's right to portability. The holder of the
//! usage point's data (a consent or owner grant, [`View::holder_grant`]) gets every stored
//! reading of one series, or of all, over a range, as SenML JSON (RFC 8428,
//! `application/senml+json`).
//!
//! The pack travels in a XEP-0335 JSON container, `<json xmlns='urn:xmpp:json:0'>[…]</json>`,
//! after the result form: the standard element for JSON in a stanza, which a client reads as
//! the element's text and hands to any JSON parser, whereas a form field would have to split
//! the text over values. Each page is a complete pack, below `[xmpp] max_stanza_size`, paged
//! with the ad-hoc session like `history` (`next` until `completed`); concatenating the
//! resolved records of the pages gives the export.
//!
//! Above `[privacy] export_inline_max` readings (when the web server runs), the answer is a
//! one-time link instead, `{public_url}/export/{token}`: 256 random bits, kept in the store only
//! as their SHA-256 so that any instance serves it and a reader of the database cannot use it,
//! valid for [`LINK_LIFETIME`], usable once (the download claims it, `crate::web::export`).
//!
//! Only what the component holds is exported: nothing is fetched upstream (`history` does).
//! Each page, and each download, appends one audit entry per series it carries (command
//! `export`, under the holder's grant); a page with no reading at all appends one entry with 0
//! records for what was asked.
//!
//! [`View::holder_grant`]: crate::access::View::holder_grant

use async_trait::async_trait;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use super::get_history::required;
use super::time_range::{parse_instant, Range};
use crate::model::{id, AuditEntry, Grant, Series, UsagePoint, ANY};
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::command::{Note, NoteType};
use crate::stanzas::form::Submitted;
use crate::stanzas::ns;
use crate::stanzas::senml_json::{first_record, next_record, xml_size, CONTENT_TYPE};
use crate::store::Export as ExportLink;
use crate::time::{now, paris};
use crate::xep::adhoc::{Access, AdHocCommand, Outcome, Scope, Spec, Stage};

/// The audit entries' `command`.
pub use crate::model::audit_command::EXPORT;
/// How long a download link works.
pub const LINK_LIFETIME: i64 = 3600;
/// Room kept in each stanza for everything but the records (iq, command, form, container).
const ENVELOPE: usize = 8 * 1024;
/// Rows fetched per store query while filling a page.
const FETCH: usize = 4096;
/// The default range: the last three years, the longest history Enedis keeps.
const DEFAULT_DAYS: i64 = 3 * 366;

pub(crate) struct Export;

static SPEC: Spec = Spec {
    node: EXPORT,
    name: "Export my data (SenML JSON)",
    access: Access::Anyone,
    scopes: &[Scope::UsagePoint],
};

/// The series an export of `path` (a series path, or `*`) covers, by path: the usage point's
/// series the holder's grant covers. An unknown path is the requester's mistake.
async fn selection(
    ctx: &Context,
    up: &UsagePoint,
    grant: &Grant,
    path: &str,
) -> Result<Vec<Series>, RequestError> {
    let mut series: Vec<Series> = ctx
        .store
        .series(&up.id)
        .await?
        .into_iter()
        .filter(|s| grant.covers_series(&s.path) && (path == ANY || s.path == path))
        .collect();
    if series.is_empty() && path != ANY {
        return Err(RequestError::bad_request(format!(
            "series: usage point {} has no series {path}",
            up.id
        )));
    }
    series.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(series)
}

fn default_range() -> (i64, i64) {
    let end = now();
    (end.saturating_sub(DEFAULT_DAYS * 86_400), end)
}

fn format_instant(t: i64) -> String {
    paris::rfc3339(t).unwrap_or_else(|| t.to_string())
}

#[async_trait]
impl AdHocCommand for Export {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, ctx: &Context, req: &Request) -> Result<DataForm, RequestError> {
        let (up, grant) = super::holder(req, EXPORT)?;
        let series = selection(ctx, up, grant, ANY).await?;
        let mut field = Field::new("series", FieldType::ListSingle).with_value(ANY);
        field.options = std::iter::once(Option_ {
            label: Some("All series".into()),
            value: ANY.into(),
        })
        .chain(series.iter().map(|s| Option_ {
            label: Some(s.title.clone()),
            value: s.path.clone(),
        }))
        .collect();
        let (start, end) = default_range();
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some(format!("Export the data of {}", up.name)),
            instructions: Some(
                "Every stored reading of the range, as SenML JSON (application/senml+json). \
                 Times: ISO 8601 with offset, or YYYY-MM-DD; the range is [start, end)."
                    .into(),
            ),
            fields: vec![
                required(field, "Series"),
                required(
                    Field::text_single("start", &format_instant(start)),
                    "Start (included)",
                ),
                required(
                    Field::text_single("end", &format_instant(end)),
                    "End (excluded)",
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
        // Checked again at every page: a consent revoked meanwhile stops the export.
        let (up, grant) = super::holder(req, EXPORT)?;
        let path = super::required_value(input, "series")?;
        let (default_start, default_end) = default_range();
        let start = match input.single("start") {
            Some(text) => parse_instant("start", &text)?,
            None => default_start,
        };
        let end = match input.single("end") {
            Some(text) => parse_instant("end", &text)?,
            None => default_end,
        };
        let range = Range::new(start, end, "end")?;
        let series = selection(ctx, up, grant, &path).await?;
        let job = Job {
            ctx,
            req,
            up,
            grant,
            path: &path,
            series: &series,
            range,
        };
        match cursor {
            None => {
                let mut total = 0u64;
                for s in &series {
                    total += ctx
                        .store
                        .count_readings(&up.id, &s.path, range.start, range.end)
                        .await?;
                }
                match ctx.export_inline_max {
                    Some(max) if total > max => job.link(total).await,
                    _ => job.page(Cursor::start(range)).await,
                }
            }
            Some(text) => job.page(Cursor::parse(text, &series, range)?).await,
        }
    }
}

/// Where a page starts: the index of a series in the selection and a time in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    series: usize,
    from: i64,
}

impl Cursor {
    fn start(range: Range) -> Cursor {
        Cursor {
            series: 0,
            from: range.start,
        }
    }

    /// `<series index>:<unix time>`, as [`Cursor::encode`] writes it.
    fn parse(text: &str, series: &[Series], range: Range) -> Result<Cursor, RequestError> {
        text.split_once(':')
            .and_then(|(i, t)| Some((i.parse::<usize>().ok()?, t.parse::<i64>().ok()?)))
            .filter(|(i, t)| *i < series.len() && (range.start..range.end).contains(t))
            .map(|(series, from)| Cursor { series, from })
            .ok_or_else(|| RequestError::bad_request("sessionid: corrupt paging state"))
    }

    fn encode(self) -> String {
        format!("{}:{}", self.series, self.from)
    }
}

/// One run of the command, resolved.
struct Job<'a> {
    ctx: &'a Context,
    req: &'a Request,
    up: &'a UsagePoint,
    grant: &'a Grant,
    path: &'a str,
    series: &'a [Series],
    range: Range,
}

impl Job<'_> {
    /// The answer for a large range: a one-time link.
    async fn link(&self, total: u64) -> Result<Stage, RequestError> {
        let token = id::secret_token()
            .ok_or_else(|| RequestError::Internal("no randomness for an export token".into()))?;
        let created_at = now();
        let expires_at = created_at + LINK_LIFETIME;
        self.ctx
            .store
            .add_export(&ExportLink {
                token_hash: id::token_hash(&token),
                requester: self.req.requester.to_string(),
                usage_point: self.up.id.clone(),
                series: self.path.to_owned(),
                start: self.range.start,
                end: self.range.end,
                grant_id: self.grant.id,
                created_at,
                expires_at,
            })
            .await?;
        let url = format!(
            "{}/export/{token}",
            self.ctx.public_url.trim_end_matches('/')
        );
        let mut fields = vec![
            labelled(
                Field::text_single("url", &url),
                "Download link (works once)",
            ),
            labelled(
                Field::text_single("expires", &format_instant(expires_at)),
                "Link expires",
            ),
        ];
        fields.extend(summary(total as usize));
        Ok(Stage::Done(Outcome {
            form: Some(result_form(self.up, fields)),
            payloads: vec![],
            notes: vec![Note {
                type_: NoteType::Info,
                text: format!(
                    "{total} readings: too many for this chat; download them once within an \
                     hour from the link."
                ),
            }],
        }))
    }

    /// One page from `cursor`: records until the stanza budget or the range's end.
    async fn page(&self, cursor: Cursor) -> Result<Stage, RequestError> {
        let budget = self.ctx.max_stanza_size.saturating_sub(ENVELOPE);
        let mut records: Vec<String> = Vec::new();
        let mut size = 2usize; // the brackets
                               // Readings carried per series, and their span: the audit entries.
        let mut carried: Vec<(usize, i64, i64, i64)> = Vec::new();
        let mut next = None;
        let mut at = cursor;
        'series: while let Some(series) = self.series.get(at.series) {
            let name = series.identifier(self.up);
            let unit = &series.measurement.unit;
            let series_from = at.from;
            let mut base: Option<i64> = None;
            let mut count = 0i64;
            loop {
                let chunk = self
                    .ctx
                    .store
                    .readings(
                        &self.up.id,
                        &series.path,
                        at.from,
                        self.range.end,
                        Some(FETCH),
                    )
                    .await?;
                let full_chunk = chunk.len() == FETCH;
                for r in chunk {
                    let record = match base {
                        None => first_record(&name, unit, r.time, r.value),
                        Some(bt) => next_record(r.time - bt, r.value),
                    };
                    let cost = xml_size(&record) + usize::from(!records.is_empty());
                    if size + cost > budget && !records.is_empty() {
                        next = Some(Cursor {
                            series: at.series,
                            from: r.time,
                        });
                        if count > 0 {
                            carried.push((at.series, count, series_from, r.time));
                        }
                        break 'series;
                    }
                    size += cost;
                    base.get_or_insert(r.time);
                    records.push(record);
                    count += 1;
                    at.from = r.time + 1;
                }
                if !full_chunk {
                    break;
                }
            }
            if count > 0 {
                carried.push((at.series, count, series_from, self.range.end));
            }
            at = Cursor {
                series: at.series + 1,
                from: self.range.start,
            };
        }
        self.audit(&carried, cursor).await?;

        let mut json = Element::builder("json", ns::JSON).build();
        json.append_text_node(format!("[{}]", records.join(",")));
        let outcome = Outcome {
            form: Some(result_form(self.up, summary(records.len()))),
            payloads: vec![json],
            notes: vec![],
        };
        Ok(match next {
            None => Stage::Done(outcome),
            Some(next) => Stage::More(outcome, next.encode()),
        })
    }

    /// One audit entry per series the page carried, `(index, records, start, end)`; one entry
    /// with 0 records for an empty page.
    async fn audit(
        &self,
        carried: &[(usize, i64, i64, i64)],
        cursor: Cursor,
    ) -> Result<(), RequestError> {
        let at = now();
        let entry = |series: &str, records: i64, start: i64, end: i64| AuditEntry {
            requester: self.req.requester.to_string(),
            usage_point: self.up.id.clone(),
            series: series.to_owned(),
            start,
            end,
            grant_id: self.grant.id,
            command: EXPORT.to_owned(),
            records,
            at,
        };
        if carried.is_empty() {
            self.ctx
                .store
                .append_audit(&entry(self.path, 0, cursor.from, self.range.end))
                .await?;
        }
        for &(index, records, start, end) in carried {
            let path = self.series.get(index).map_or(ANY, |s| s.path.as_str());
            self.ctx
                .store
                .append_audit(&entry(path, records, start, end))
                .await?;
        }
        Ok(())
    }
}

fn labelled(mut field: Field, label: &str) -> Field {
    field.label = Some(label.to_owned());
    field
}

/// The fields every answer carries: how many readings, in which format.
fn summary(records: usize) -> Vec<Field> {
    vec![
        labelled(
            Field::text_single("records", &records.to_string()),
            "Readings",
        ),
        labelled(Field::text_single("format", CONTENT_TYPE), "Format"),
    ]
}

fn result_form(up: &UsagePoint, fields: Vec<Field>) -> Element {
    DataForm {
        type_: DataFormType::Result_,
        title: Some(format!("Export of {}", up.name)),
        instructions: None,
        fields,
    }
    .into()
}
