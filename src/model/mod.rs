//! Domain types shared by sources, the store and the XMPP handlers.
//!
//! Nothing here knows about XML or SQL: the store maps these to rows, `stanzas/` and `xep/` map
//! them to elements.

pub mod audit_chain;
pub mod id;
pub(crate) mod redirect_uri;

use std::fmt;

/// Characters allowed in a usage-point id: they must be safe as a JID localpart (RFC 7622 forbids
/// `"&'/:<>@` and spaces) and stable in URNs, so we are stricter than the RFC.
pub(crate) fn is_valid_usage_point_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Who vouches for a usage point's identifier (`enedis` PRM, `demo`, `xaal` UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub authority: String,
    /// `prm`, `uuid`, …
    pub kind: String,
    pub value: String,
}

impl Identifier {
    /// The URN that prefixes series identifiers: `urn:dev:prm:30001610071843`.
    pub(crate) fn urn(&self) -> String {
        format!("urn:dev:{}:{}", self.kind, self.value)
    }
}

/// One meter or device: one JID `<id>@<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePoint {
    /// JID localpart, unique across sources.
    pub id: String,
    /// Id of the source that declared it.
    pub source: String,
    /// `electricity-meter`, `thermometer`, …
    pub device_type: String,
    pub identifier: Identifier,
    /// Human-readable name shown in discovery.
    pub name: String,
    /// False once a source says the device stopped reporting; its history stays.
    pub online: bool,
}

/// Direction of an energy flow, or `None` for non-electric sensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// Short name, e.g. `active-power`.
    pub name: String,
    /// `consumption`, `production`, or empty for sensors without a direction.
    pub direction: String,
    /// `power`, `energy`, `temperature`, …
    pub quantity: String,
    /// `electrical`, `thermal`, …
    pub kind: String,
    /// SenML unit (`W`, `Wh`, `VA`, `Cel`, `%RH`).
    pub unit: String,
    /// `mean`, `sum`, `max`, `instant`, `index`.
    pub aggregation: String,
    /// ISO 8601 duration (`PT30M`, `P1D`), empty for irregular series.
    pub sampling_interval: String,
}

/// One measurement series of a usage point: one PubSub node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub usage_point: String,
    /// Generation-2 path, e.g. `consumption/power/active/raw`; the PubSub node name.
    pub path: String,
    /// Human-readable title shown in discovery.
    pub title: String,
    pub measurement: Measurement,
}

impl Series {
    /// `urn:dev:prm:30001610071843_consumption/power/active/raw`.
    pub(crate) fn identifier(&self, usage_point: &UsagePoint) -> String {
        format!("{}_{}", usage_point.identifier.urn(), self.path)
    }
}

/// One value of a series at a time (unix seconds, UTC). Interval values are stamped at the
/// interval start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub time: i64,
    pub value: f64,
}

/// Readings of one series produced together (one source batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub usage_point: String,
    /// Series path, e.g. `consumption/power/active/raw`.
    pub series: String,
    pub readings: Vec<Reading>,
}

/// One answered data request, appended to the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Bare JID of whoever asked.
    pub requester: String,
    pub usage_point: String,
    /// Series path.
    pub series: String,
    /// Requested range `[start, end)`, unix seconds.
    pub start: i64,
    pub end: i64,
    /// The grant that allowed the access; `None` for an admin.
    pub grant_id: Option<i64>,
    /// What was answered, e.g. `get_history`.
    pub command: String,
    /// How many readings the answer held.
    pub records: i64,
    /// When the answer was given, unix seconds.
    pub at: i64,
}

/// What an audit entry records, in its `command` field, when it is not the name of the data
/// command that answered (`get_history`, `get_load_curve`, `history`, …). The access report
/// and the audit views read these names; changing one changes what old entries mean.
pub mod audit_command {
    /// Notifications of a series handed to the link for one subscriber (one entry per
    /// subscriber per delivery claim). `start`/`end`: the publication times of the first and
    /// last notification; `records`: how many notifications.
    pub const NOTIFICATION: &str = "notification";
    /// PubSub items retrieved (XEP-0060 §6.5); `records`: how many items.
    pub const PUBSUB_ITEMS: &str = "pubsub-items";
    /// A grant was added; `requester` is who added it (an admin's JID, `config`, `source:<id>`,
    /// `admin-cli`), `grant_id` the new grant.
    pub const GRANT_ADDED: &str = "grant-added";
    /// A grant was revoked; `requester` is who revoked it.
    pub const GRANT_REVOKED: &str = "grant-revoked";
    /// A customer gave a consent; `requester` is the application it was given to.
    pub const CONSENT_GIVEN: &str = "consent-given";
    /// A consent ended by revocation (an admin's JID, or `enedis` when Enedis reports it gone);
    /// `records`: how many consents ended.
    pub const CONSENT_ENDED: &str = "consent-ended";
    /// A subscription was ended by an admin; `records`: the subscription id.
    pub const SUBSCRIPTION_ENDED: &str = "subscription-ended";
    /// Entries were pruned by `[audit] keep` (see `crate::model::audit_chain`).
    pub const CHECKPOINT: &str = "audit-pruned";
    /// Readings exported to their holder (`export`, a page or a download): one entry per
    /// series carried.
    pub const EXPORT: &str = "export";
    /// A usage point's readings erased after its consents ended (`[privacy]
    /// retain_after_consent`); `requester` is the component's domain, `records` the readings
    /// deleted, `start`/`end` their time span, `grant_id` the grant of the consent that ended last.
    pub const ERASURE: &str = "erasure";
    /// A device of an `http` source posted readings (`POST /ingest/…`); `requester` is the
    /// device's JID, one entry per series of the pack: `records` how many readings it held,
    /// `start`/`end` their time range (`end` one second after the last).
    pub const INGEST: &str = "ingest";
}

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOrigin {
    /// `[[access.grant]]` in the config file; reconciled at every start (unchanged grants keep
    /// their ids, removed ones are revoked).
    Config,
    /// An admin command.
    Admin,
    /// A consumer's consent (Enedis OAuth).
    Consent,
    /// A source's owners list (xAAL).
    Source,
}

impl GrantOrigin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GrantOrigin::Config => "config",
            GrantOrigin::Admin => "admin",
            GrantOrigin::Consent => "consent",
            GrantOrigin::Source => "source",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "config" => GrantOrigin::Config,
            "admin" => GrantOrigin::Admin,
            "consent" => GrantOrigin::Consent,
            "source" => GrantOrigin::Source,
            _ => return None,
        })
    }
}

impl fmt::Display for GrantOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Wildcard accepted in grant usage-point and series patterns.
pub const ANY: &str = "*";

/// Permission for one subject to read one usage point (or all, `*`) and some of its series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Store id; `None` before insertion.
    pub id: Option<i64>,
    /// Bare JID of the grantee.
    pub subject: String,
    /// Usage-point id or `*`.
    pub usage_point: String,
    /// Series path or `*`.
    pub series: String,
    /// Unix seconds; `None` = since always.
    pub valid_from: Option<i64>,
    /// Unix seconds; `None` = no expiry.
    pub valid_until: Option<i64>,
    pub origin: GrantOrigin,
    pub purpose: Option<String>,
}

impl Grant {
    /// True when the grant is in force at `now` (unix seconds).
    pub(crate) fn is_valid_at(&self, now: i64) -> bool {
        self.valid_from.is_none_or(|from| from <= now)
            && self.valid_until.is_none_or(|until| now < until)
    }

    pub(crate) fn covers_usage_point(&self, usage_point: &str) -> bool {
        self.usage_point == ANY || self.usage_point == usage_point
    }

    pub(crate) fn covers_series(&self, series: &str) -> bool {
        self.series == ANY || self.series == series
    }
}

/// How a subscriber receives new readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// XEP-0060 node subscription: notifications go to the JID exactly as given (bare or full).
    PubSub,
    /// Quoalise generation-2 `subscribe` command: a `<message>` to the bare JID.
    Push,
}

impl SubscriptionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::PubSub => "pubsub",
            SubscriptionKind::Push => "push",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pubsub" => SubscriptionKind::PubSub,
            "push" => SubscriptionKind::Push,
            _ => return None,
        })
    }
}

impl fmt::Display for SubscriptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subscriber of one series (PubSub node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Store id, never reused (outbox entries keep referring to it after removal).
    pub id: i64,
    pub kind: SubscriptionKind,
    pub usage_point: String,
    /// Series path, i.e. the node name.
    pub series: String,
    /// Bare or full JID, exactly as given.
    pub jid: String,
    /// XEP-0060 subscription id.
    pub subid: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A published PubSub item: one per live source batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub usage_point: String,
    /// Series path (node).
    pub series: String,
    pub item_id: String,
    /// Unix seconds.
    pub published_at: i64,
    /// Serialised `<quoalise/>` element.
    pub payload: String,
}

/// A stanza waiting to be delivered (or written to the server and kept for bounce handling).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    /// The subscription the stanza is for, if any. Not a foreign key: the entry outlives the
    /// subscription, and the id is never reused for another one.
    pub subscription: Option<i64>,
    /// Serialised stanza.
    pub stanza: String,
    /// How many times [`retry_later`](crate::store::OutboxStore::retry_later) put it back.
    pub attempts: i32,
    /// Unix seconds before which it is not sent; 0 for entries queued to go at once.
    pub not_before: i64,
}

/// A consent page an application asked for (`get_authorize_uri`), shown at `/authorize?id=…`.
/// Kept until deleted: an application may hand the same address to many customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// Unguessable id, the `id` query parameter of the page.
    pub id: String,
    /// The source the consent is for (`enedis`).
    pub source: String,
    /// Bare JID of the application; the grant goes to it.
    pub app_jid: String,
    pub name: String,
    /// An https URL, checked when the request was made.
    pub logo_url: Option<String>,
    /// The description as the application gave it (HTML, sanitised when shown).
    pub description: String,
    /// Where the browser may be sent back; any other address gets a confirmation page instead.
    pub redirect_uri: Option<String>,
    pub created_at: i64,
}

/// The OAuth `state` handed to the consent provider for one visit of a consent page: opaque,
/// single use, short-lived. It carries what the page was asked with, so the callback needs
/// nothing from the browser but the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub state: String,
    pub request_id: String,
    /// ISO 8601 duration asked on the page (`P1Y`).
    pub duration: String,
    /// The application's own `state`, given back to it untouched.
    pub app_state: Option<String>,
    /// The `redirect_uri` the page was opened with, if any.
    pub redirect_uri: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A customer's consent: one usage point shared with one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Store id; `None` before insertion.
    pub id: Option<i64>,
    pub source: String,
    pub usage_point: String,
    pub app_jid: String,
    /// The purpose the customer read: the page's description as text.
    pub purpose: String,
    pub request_id: String,
    /// The provider's reference of the consent (Enedis `autorisation_id`, or the legacy `code`).
    pub reference: String,
    pub begins_at: i64,
    pub expires_at: i64,
    /// The grant recorded with the consent.
    pub grant_id: Option<i64>,
}

/// One call to an upstream API, recorded before it is made and completed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCall {
    /// Store id; `None` before insertion.
    pub id: Option<i64>,
    pub source: String,
    /// API name (`courbe_de_charge_consommation`, `subscribed_services`, `token`).
    pub api: String,
    pub usage_point: Option<String>,
    /// Requested days `[first, end)` as `YYYY-MM-DD`, when the API takes a range.
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    /// The consent the call relies on, if any.
    pub consent_id: Option<i64>,
    /// Bare JID of whoever caused the call (`None`: the component's own poll).
    pub requester: Option<String>,
    pub started_at: i64,
    /// HTTP status, or `error` when no answer came; `None` while the call runs (or if the
    /// component stopped during it).
    pub status: Option<String>,
    /// Upstream error code, for failed calls.
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(up: &str, from: Option<i64>, until: Option<i64>) -> Grant {
        Grant {
            id: None,
            subject: "alice@example.org".into(),
            usage_point: up.into(),
            series: ANY.into(),
            valid_from: from,
            valid_until: until,
            origin: GrantOrigin::Config,
            purpose: None,
        }
    }

    #[test]
    fn usage_point_ids_are_localpart_safe() {
        assert!(is_valid_usage_point_id("30001610071843"));
        assert!(is_valid_usage_point_id(
            "0f1e2d3c-aaaa-bbbb-cccc-001122334455"
        ));
        for bad in ["", "a@b", "a/b", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(!is_valid_usage_point_id(bad), "{bad}");
        }
    }

    #[test]
    fn grant_validity_window_is_half_open() {
        let g = grant("*", Some(10), Some(20));
        assert!(!g.is_valid_at(9));
        assert!(g.is_valid_at(10));
        assert!(g.is_valid_at(19));
        assert!(!g.is_valid_at(20));
        assert!(grant("*", None, None).is_valid_at(i64::MIN));
    }

    #[test]
    fn grant_patterns() {
        assert!(grant("*", None, None).covers_usage_point("x"));
        assert!(grant("x", None, None).covers_usage_point("x"));
        assert!(!grant("x", None, None).covers_usage_point("y"));
    }

    #[test]
    fn series_identifier_uses_the_urn() {
        let up = UsagePoint {
            id: "30001610071843".into(),
            source: "enedis".into(),
            device_type: "electricity-meter".into(),
            identifier: Identifier {
                authority: "enedis".into(),
                kind: "prm".into(),
                value: "30001610071843".into(),
            },
            name: "Linky".into(),
            online: true,
        };
        let s = Series {
            usage_point: up.id.clone(),
            path: "consumption/power/active/raw".into(),
            title: "Load curve".into(),
            measurement: Measurement {
                name: "active-power".into(),
                direction: "consumption".into(),
                quantity: "power".into(),
                kind: "electrical".into(),
                unit: "W".into(),
                aggregation: "mean".into(),
                sampling_interval: "PT30M".into(),
            },
        };
        assert_eq!(
            s.identifier(&up),
            "urn:dev:prm:30001610071843_consumption/power/active/raw"
        );
    }

    #[test]
    fn grant_origin_round_trips() {
        for o in [
            GrantOrigin::Config,
            GrantOrigin::Admin,
            GrantOrigin::Consent,
            GrantOrigin::Source,
        ] {
            assert_eq!(GrantOrigin::parse(o.as_str()), Some(o));
        }
        assert_eq!(GrantOrigin::parse("nope"), None);
    }

    #[test]
    fn subscription_kind_round_trips() {
        for k in [SubscriptionKind::PubSub, SubscriptionKind::Push] {
            assert_eq!(SubscriptionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SubscriptionKind::parse("PubSub"), None);
    }
}
