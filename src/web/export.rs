//! `GET /export/{token}`: the one-time download link `export` hands out for a large range
//! (`crate::commands::export`). The link is claimed in the store by the token's SHA-256, in one
//! statement, so it serves once whatever the instance; the export is audited (one entry per
//! series, command `export`, the readings it will carry) before the first byte leaves; the
//! body, `application/senml+json`, is streamed a store query at a time so that memory stays
//! bounded however long the range.
//!
//! Unknown link: 404; used or expired: 410; each with a short plain-text body saying which.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::WebState;
use crate::commands::export::EXPORT;
use crate::model::{id, AuditEntry, Series, UsagePoint, ANY};
use crate::stanzas::senml_json::{first_record, next_record, CONTENT_TYPE};
use crate::store::{Export, ExportClaim, Store, StoreError};
use crate::time::now;

/// Rows read per store query while streaming.
const FETCH: usize = 4096;
/// Longest token looked at: ours are 64 hex digits.
const MAX_TOKEN: usize = 128;

pub(crate) async fn download(
    State(state): State<Arc<WebState>>,
    Path(token): Path<String>,
) -> Response {
    let claim = if token.len() > MAX_TOKEN {
        Ok(ExportClaim::Unknown)
    } else {
        state
            .store
            .claim_export(&id::token_hash(&token), now())
            .await
    };
    let export = match claim {
        Ok(ExportClaim::Claimed(export)) => export,
        Ok(ExportClaim::Unknown) => return text(StatusCode::NOT_FOUND, "Unknown export link."),
        Ok(ExportClaim::Used) => {
            return text(
                StatusCode::GONE,
                "This export link was already used: a link works once. Run export again.",
            )
        }
        Ok(ExportClaim::Expired) => {
            return text(
                StatusCode::GONE,
                "This export link has expired (links work for one hour). Run export again.",
            )
        }
        Err(e) => return internal(e),
    };
    match prepare(state.store.as_ref(), &export).await {
        Ok(Some((up, series))) => stream(state.store.clone(), export, up, series),
        // The usage point went away between the link and the download.
        Ok(None) => text(
            StatusCode::GONE,
            "The data of this export no longer exists.",
        ),
        Err(e) => internal(e),
    }
}

/// The usage point and series of `export`, with the audit entries written.
async fn prepare(
    store: &dyn Store,
    export: &Export,
) -> Result<Option<(UsagePoint, Vec<Series>)>, StoreError> {
    let Some(up) = store.usage_point(&export.usage_point).await? else {
        return Ok(None);
    };
    let mut series: Vec<Series> = store
        .series(&up.id)
        .await?
        .into_iter()
        .filter(|s| export.series == ANY || s.path == export.series)
        .collect();
    series.sort_by(|a, b| a.path.cmp(&b.path));
    // One entry per series the download carries; one of 0 records when it carries nothing,
    // as the command's pages do.
    let mut carried = Vec::new();
    for s in &series {
        let records = store
            .count_readings(&up.id, &s.path, export.start, export.end)
            .await?;
        if records > 0 {
            carried.push((s.path.as_str(), records));
        }
    }
    if carried.is_empty() {
        carried.push((export.series.as_str(), 0));
    }
    let at = now();
    for (path, records) in carried {
        store
            .append_audit(&AuditEntry {
                requester: export.requester.clone(),
                usage_point: up.id.clone(),
                series: path.to_owned(),
                start: export.start,
                end: export.end,
                grant_id: export.grant_id,
                command: EXPORT.to_owned(),
                records: i64::try_from(records).unwrap_or(i64::MAX),
                at,
            })
            .await?;
    }
    Ok(Some((up, series)))
}

/// Where the stream is: the series being read and the time to read from.
struct Position {
    series: usize,
    from: i64,
    /// Base time of the current series, once its first record is written.
    base: Option<i64>,
    /// Whether the opening bracket was written.
    opened: bool,
    /// Whether a record was written (the next one needs a comma).
    wrote: bool,
    finished: bool,
}

fn stream(store: Arc<dyn Store>, export: Export, up: UsagePoint, series: Vec<Series>) -> Response {
    let start = Position {
        series: 0,
        from: export.start,
        base: None,
        opened: false,
        wrote: false,
        finished: false,
    };
    let filename = format!(
        "attachment; filename=\"export-{}.json\"",
        export_name(&export)
    );
    let job = Arc::new((export, up, series));
    let body = futures::stream::unfold(start, move |mut at| {
        let (store, job) = (store.clone(), job.clone());
        async move {
            let (export, up, series) = &*job;
            if at.finished {
                return None;
            }
            let mut out = String::new();
            if !at.opened {
                out.push('[');
                at.opened = true;
            }
            let Some(s) = series.get(at.series) else {
                out.push(']');
                at.finished = true;
                return Some((Ok::<_, StoreError>(Bytes::from(out)), at));
            };
            let chunk = match store
                .readings(&up.id, &s.path, at.from, export.end, Some(FETCH))
                .await
            {
                Ok(chunk) => chunk,
                Err(e) => {
                    // The client sees a cut body, never a valid-looking partial pack.
                    tracing::error!(error = %e, "export download: cannot read readings");
                    at.finished = true;
                    return Some((Err(e), at));
                }
            };
            let name = s.identifier(up);
            for r in &chunk {
                if at.wrote {
                    out.push(',');
                }
                match at.base {
                    None => {
                        out += &first_record(&name, &s.measurement.unit, r.time, r.value);
                        at.base = Some(r.time);
                    }
                    Some(bt) => out += &next_record(r.time - bt, r.value),
                }
                at.wrote = true;
                at.from = r.time + 1;
            }
            if chunk.len() < FETCH {
                at.series += 1;
                at.from = export.start;
                at.base = None;
            }
            Some((Ok(Bytes::from(out)), at))
        }
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// The usage point id, kept to the characters a file name may safely hold.
fn export_name(export: &Export) -> String {
    export
        .usage_point
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn internal(e: StoreError) -> Response {
    tracing::error!(error = %e, "export download failed");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The service could not serve this export; try again later.",
    )
}
