//! Row types shared by both backends and their mapping to the model.
//!
//! The backends differ in SQL dialect, not in what a row holds: the column lists and conversions
//! live here once so that a new field cannot be mapped on one backend and forgotten on the other.

use crate::model::audit_chain::ChainedEntry;
use crate::model::{
    AuditEntry, Consent, ConsentRequest, Grant, GrantOrigin, Identifier, Item, Measurement,
    OAuthState, OutboxEntry, Reading, Series, Subscription, SubscriptionKind, UpstreamCall,
    UsagePoint,
};

use super::{AuditRecord, Claimed, Publication, StoreError};

/// Columns read into [`UsagePointRow`], in a form both dialects accept.
pub(super) const USAGE_POINT_COLUMNS: &str = "id, source, device_type, identifier_authority, \
     identifier_kind, identifier_value, name, online";

/// Columns read into [`SeriesRow`].
pub(super) const SERIES_COLUMNS: &str = "usage_point, path, title, measurement_name, direction, \
     quantity, kind, unit, aggregation, sampling_interval";

/// Columns read into [`GrantRow`].
pub(super) const GRANT_COLUMNS: &str =
    "id, subject, usage_point, series, valid_from, valid_until, origin, purpose";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct UsagePointRow {
    id: String,
    source: String,
    device_type: String,
    identifier_authority: String,
    identifier_kind: String,
    identifier_value: String,
    name: String,
    online: bool,
}

impl From<UsagePointRow> for UsagePoint {
    fn from(row: UsagePointRow) -> Self {
        UsagePoint {
            id: row.id,
            source: row.source,
            device_type: row.device_type,
            identifier: Identifier {
                authority: row.identifier_authority,
                kind: row.identifier_kind,
                value: row.identifier_value,
            },
            name: row.name,
            online: row.online,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SeriesRow {
    usage_point: String,
    path: String,
    title: String,
    measurement_name: String,
    direction: String,
    quantity: String,
    kind: String,
    unit: String,
    aggregation: String,
    sampling_interval: String,
}

impl From<SeriesRow> for Series {
    fn from(row: SeriesRow) -> Self {
        Series {
            usage_point: row.usage_point,
            path: row.path,
            title: row.title,
            measurement: Measurement {
                name: row.measurement_name,
                direction: row.direction,
                quantity: row.quantity,
                kind: row.kind,
                unit: row.unit,
                aggregation: row.aggregation,
                sampling_interval: row.sampling_interval,
            },
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct GrantRow {
    id: i64,
    subject: String,
    usage_point: String,
    series: String,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    origin: String,
    purpose: Option<String>,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        // The schema has no CHECK on origin (see the migrations), so a hand-edited or newer row
        // can hold a value this build does not know; granting on a guess would be worse.
        let origin = GrantOrigin::parse(&row.origin).ok_or_else(|| {
            StoreError::Corrupt(format!("grant {}: unknown origin {:?}", row.id, row.origin))
        })?;
        Ok(Grant {
            id: Some(row.id),
            subject: row.subject,
            usage_point: row.usage_point,
            series: row.series,
            valid_from: row.valid_from,
            valid_until: row.valid_until,
            origin,
            purpose: row.purpose,
        })
    }
}

pub(super) fn grants_from_rows(rows: Vec<GrantRow>) -> Result<Vec<Grant>, StoreError> {
    rows.into_iter().map(Grant::try_from).collect()
}

/// Unix seconds for `created_at`, `updated_at` and `revoked_at`, taken from the component's clock
/// so that both backends stamp rows the same way.
pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Columns read into [`AuditRow`].
pub(super) const AUDIT_COLUMNS: &str =
    "id, at, requester, usage_point, series, range_start, range_end, grant_id, command, records";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    requester: String,
    usage_point: String,
    series: String,
    range_start: i64,
    range_end: i64,
    grant_id: Option<i64>,
    command: String,
    records: i64,
}

/// An audit row with its chain columns.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChainedAuditRow {
    #[sqlx(flatten)]
    row: AuditRow,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl From<ChainedAuditRow> for ChainedEntry {
    fn from(r: ChainedAuditRow) -> Self {
        let (id, entry) = r.row.into();
        ChainedEntry {
            id,
            entry,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

impl From<AuditRow> for (i64, AuditEntry) {
    fn from(row: AuditRow) -> Self {
        (
            row.id,
            AuditEntry {
                requester: row.requester,
                usage_point: row.usage_point,
                series: row.series,
                start: row.range_start,
                end: row.range_end,
                grant_id: row.grant_id,
                command: row.command,
                records: row.records,
                at: row.at,
            },
        )
    }
}

/// An audit row with the origin and purpose of its grant (a left join: `NULL` without one).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct FoundAuditRow {
    #[sqlx(flatten)]
    row: AuditRow,
    grant_origin: Option<String>,
    grant_purpose: Option<String>,
}

impl TryFrom<FoundAuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(r: FoundAuditRow) -> Result<Self, StoreError> {
        let (id, entry) = r.row.into();
        let grant = match (entry.grant_id, r.grant_origin) {
            (Some(grant), Some(origin)) => Some((
                GrantOrigin::parse(&origin).ok_or_else(|| {
                    StoreError::Corrupt(format!("grant {grant}: unknown origin {origin:?}"))
                })?,
                r.grant_purpose,
            )),
            _ => None,
        };
        Ok(AuditRecord { id, entry, grant })
    }
}

/// A reading as both backends return it: `SELECT time, value`.
pub(super) type ReadingRow = (i64, f64);

pub(super) fn reading_from_row((time, value): ReadingRow) -> Reading {
    Reading { time, value }
}

/// Columns read into [`SubscriptionRow`].
pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "id, kind, usage_point, series, jid, subid, created_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SubscriptionRow {
    id: i64,
    kind: String,
    usage_point: String,
    series: String,
    jid: String,
    subid: String,
    created_at: i64,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> Result<Self, StoreError> {
        // No CHECK on kind, as for grant origins: an unknown kind is reported, not guessed.
        let kind = SubscriptionKind::parse(&row.kind).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "subscription {}: unknown kind {:?}",
                row.id, row.kind
            ))
        })?;
        Ok(Subscription {
            id: row.id,
            kind,
            usage_point: row.usage_point,
            series: row.series,
            jid: row.jid,
            subid: row.subid,
            created_at: row.created_at,
        })
    }
}

/// Subscriptions ordered by id, whatever order the rows came in (`RETURNING` promises none).
pub(super) fn subscriptions_from_rows(
    rows: Vec<SubscriptionRow>,
) -> Result<Vec<Subscription>, StoreError> {
    let mut subscriptions = rows
        .into_iter()
        .map(Subscription::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    subscriptions.sort_by_key(|s| s.id);
    Ok(subscriptions)
}

/// Columns read into [`OutboxRow`].
pub(super) const OUTBOX_COLUMNS: &str = "id, subscription_id, stanza, attempts, not_before";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OutboxRow {
    id: i64,
    subscription_id: Option<i64>,
    stanza: String,
    attempts: i32,
    not_before: i64,
}

impl From<OutboxRow> for OutboxEntry {
    fn from(row: OutboxRow) -> Self {
        OutboxEntry {
            id: row.id,
            subscription: row.subscription_id,
            stanza: row.stanza,
            attempts: row.attempts,
            not_before: row.not_before,
        }
    }
}

/// Entries oldest (smallest id) first, whatever order the rows came in.
pub(super) fn outbox_from_rows(rows: Vec<OutboxRow>) -> Vec<OutboxEntry> {
    let mut entries: Vec<OutboxEntry> = rows.into_iter().map(OutboxEntry::from).collect();
    entries.sort_by_key(|e| e.id);
    entries
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PublicationRow {
    seq: i64,
    published_at: i64,
    pubsub: String,
    push: String,
}

impl From<PublicationRow> for Publication {
    fn from(row: PublicationRow) -> Self {
        Publication {
            seq: row.seq,
            published_at: row.published_at,
            pubsub: row.pubsub,
            push: row.push,
        }
    }
}

/// What a claim of subscriptions returns: [`SUBSCRIPTION_COLUMNS`], then where it stands.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ClaimRow {
    #[sqlx(flatten)]
    subscription: SubscriptionRow,
    pub(super) series_id: i64,
    delivered_seq: i64,
}

impl ClaimRow {
    /// The claimed subscription, its series' last publication being `head`.
    pub(super) fn claimed(self, head: i64) -> Result<Claimed, StoreError> {
        Ok(Claimed {
            subscription: Subscription::try_from(self.subscription)?,
            series_id: self.series_id,
            delivered: self.delivered_seq,
            head,
        })
    }
}

/// An item as both backends return it: `SELECT item_id, published_at, payload`, the node being
/// known from the query.
pub(super) type ItemRow = (String, i64, String);

pub(super) fn items_from_rows(usage_point: &str, series: &str, rows: Vec<ItemRow>) -> Vec<Item> {
    rows.into_iter()
        .map(|(item_id, published_at, payload)| Item {
            usage_point: usage_point.to_owned(),
            series: series.to_owned(),
            item_id,
            published_at,
            payload,
        })
        .collect()
}

/// Columns read into [`ConsentRequestRow`].
pub(super) const CONSENT_REQUEST_COLUMNS: &str =
    "id, source, app_jid, name, logo_url, description, redirect_uri, created_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ConsentRequestRow {
    id: String,
    source: String,
    app_jid: String,
    name: String,
    logo_url: Option<String>,
    description: String,
    redirect_uri: Option<String>,
    created_at: i64,
}

impl From<ConsentRequestRow> for ConsentRequest {
    fn from(row: ConsentRequestRow) -> Self {
        ConsentRequest {
            id: row.id,
            source: row.source,
            app_jid: row.app_jid,
            name: row.name,
            logo_url: row.logo_url,
            description: row.description,
            redirect_uri: row.redirect_uri,
            created_at: row.created_at,
        }
    }
}

/// Columns read into [`OAuthStateRow`].
pub(super) const OAUTH_STATE_COLUMNS: &str =
    "state, request_id, duration, app_state, redirect_uri, created_at, expires_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OAuthStateRow {
    state: String,
    request_id: String,
    duration: String,
    app_state: Option<String>,
    redirect_uri: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl From<OAuthStateRow> for OAuthState {
    fn from(row: OAuthStateRow) -> Self {
        OAuthState {
            state: row.state,
            request_id: row.request_id,
            duration: row.duration,
            app_state: row.app_state,
            redirect_uri: row.redirect_uri,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

/// Columns read into [`ConsentRow`].
pub(super) const CONSENT_COLUMNS: &str = "id, source, usage_point, app_jid, purpose, request_id, \
     reference, begins_at, expires_at, grant_id";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ConsentRow {
    id: i64,
    source: String,
    usage_point: String,
    app_jid: String,
    purpose: String,
    request_id: String,
    reference: String,
    begins_at: i64,
    expires_at: i64,
    grant_id: Option<i64>,
}

impl From<ConsentRow> for Consent {
    fn from(row: ConsentRow) -> Self {
        Consent {
            id: Some(row.id),
            source: row.source,
            usage_point: row.usage_point,
            app_jid: row.app_jid,
            purpose: row.purpose,
            request_id: row.request_id,
            reference: row.reference,
            begins_at: row.begins_at,
            expires_at: row.expires_at,
            grant_id: row.grant_id,
        }
    }
}

/// Columns read into [`UpstreamCallRow`].
pub(super) const UPSTREAM_CALL_COLUMNS: &str = "id, source, api, usage_point, range_start, \
     range_end, consent_id, requester, started_at, status, code";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct UpstreamCallRow {
    id: i64,
    source: String,
    api: String,
    usage_point: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    consent_id: Option<i64>,
    requester: Option<String>,
    started_at: i64,
    status: Option<String>,
    code: Option<String>,
}

impl From<UpstreamCallRow> for UpstreamCall {
    fn from(row: UpstreamCallRow) -> Self {
        UpstreamCall {
            id: Some(row.id),
            source: row.source,
            api: row.api,
            usage_point: row.usage_point,
            range_start: row.range_start,
            range_end: row.range_end,
            consent_id: row.consent_id,
            requester: row.requester,
            started_at: row.started_at,
            status: row.status,
            code: row.code,
        }
    }
}
