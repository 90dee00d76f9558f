//! Enedis Data Connect 2026: error bodies turned into an upstream error code and message.
//!
//! Upstream failures reach clients as `<upstream-error issuer="enedis-data-connect" code="…"/>`
//! plus a text (docs/protocol.md §7), `code` always set: Enedis' own code when the body has one,
//! else the HTTP status. Shapes met so far (docs/architecture.md §5.2):
//! - measure APIs: `{"error": "ADAM-ERR0123", "error_description": "…"}`;
//! - gateway: `{"code": "900908", "message": "Resource forbidden ", "description": "…"}`;
//! - Swaggers: `{code, message}`, a list of those, or `{code, libelle}` (comptage);
//! - gateway throttling (WSO2): `{"fault": {"code": 900807, "message": "Message throttled out",
//!   "description": "…", "nextAccessTime": "2026-Oct-05 12:34:00+0000 UTC"}}`, or the same as
//!   `<am:fault>` XML;
//! - anything else (HTML, empty body): the status and its reason phrase.

use std::fmt;

use chrono::DateTime;
use serde_json::Value;

/// Most characters of a plain-text body kept as the message.
const MAX_TEXT: usize = 200;

/// An upstream failure as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamError {
    /// HTTP status of the answer.
    pub(crate) status: u16,
    /// Enedis' code (`ADAM-ERR0123`, `900807`), else the status; never empty.
    pub(crate) code: String,
    /// Enedis' message, else the status' reason phrase; never empty.
    pub(crate) message: String,
    /// When the gateway accepts calls again (unix seconds), from `nextAccessTime`.
    pub(crate) next_access_time: Option<i64>,
}

impl UpstreamError {
    /// Over quota: HTTP 429 or a WSO2 throttling code (`9008xx` "Message throttled out").
    pub(crate) fn is_throttled(&self) -> bool {
        self.status == 429
            || matches!(
                self.code.as_str(),
                "900800" | "900802" | "900806" | "900807"
            )
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Enedis error {} (HTTP {}): {}",
            self.code, self.status, self.message
        )
    }
}

/// Reads the body of a failed answer (`status` ≥ 400). Never fails.
pub(crate) fn parse_error(status: u16, body: &str) -> UpstreamError {
    let fields = serde_json::from_str::<Value>(body)
        .ok()
        .map(|v| from_json(&v))
        .or_else(|| from_xml(body))
        .unwrap_or_default();
    let code = fields
        .code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| status.to_string());
    let message = fields
        .message
        .filter(|m| !m.is_empty())
        .or_else(|| plain_text(body))
        .unwrap_or_else(|| reason(status).to_owned());
    UpstreamError {
        status,
        code,
        message,
        next_access_time: fields
            .next_access_time
            .as_deref()
            .and_then(parse_next_access_time),
    }
}

#[derive(Debug, Default)]
struct Fields {
    code: Option<String>,
    message: Option<String>,
    next_access_time: Option<String>,
}

fn from_json(value: &Value) -> Fields {
    match value {
        Value::Array(items) => items.first().map(from_json).unwrap_or_default(),
        Value::Object(map) => {
            for nested in ["fault", "error"] {
                if let Some(inner @ Value::Object(_)) = map.get(nested) {
                    return from_json(inner);
                }
            }
            let text = |key: &str| map.get(key).and_then(scalar_text);
            let code = text("code")
                .or_else(|| text("error"))
                .or_else(|| text("errorCode"));
            let head = text("message")
                .or_else(|| text("error_description"))
                .or_else(|| text("libelle"));
            Fields {
                code,
                message: join(head, text("description")),
                next_access_time: text("nextAccessTime"),
            }
        }
        _ => Fields::default(),
    }
}

/// WSO2's XML fault: `<am:fault><am:code>900807</am:code><am:message>…` (any prefix).
fn from_xml(body: &str) -> Option<Fields> {
    if !body.contains("fault") {
        return None;
    }
    let code = xml_text(body, "code")?;
    Some(Fields {
        code: Some(code),
        message: join(xml_text(body, "message"), xml_text(body, "description")),
        next_access_time: xml_text(body, "nextAccessTime"),
    })
}

/// Text of the first element whose local name is `name` (no nesting, no entities but the basic).
fn xml_text(body: &str, name: &str) -> Option<String> {
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let tag_name = tag.split_whitespace().next().unwrap_or_default();
        let local = tag_name.rsplit(':').next().unwrap_or_default();
        if !tag.starts_with('/') && !tag.ends_with('/') && local == name {
            let content = &rest[end + 1..];
            let close = content.find('<')?;
            let text = content[..close]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            return Some(text.trim().to_owned());
        }
        rest = &rest[end + 1..];
    }
    None
}

/// A string or number field as trimmed text.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// `message: description`, either alone, or neither.
fn join(head: Option<String>, detail: Option<String>) -> Option<String> {
    match (head, detail) {
        (Some(h), Some(d)) if !h.is_empty() && !d.is_empty() && h != d && !d.starts_with(&h) => {
            Some(format!("{}: {d}", h.trim_end_matches(['.', ':', ' '])))
        }
        (Some(h), Some(d)) if h.is_empty() || d.starts_with(&h) => Some(d),
        (Some(h), _) => Some(h),
        (None, d) => d,
    }
}

/// A short plain-text body (not HTML/XML/JSON) as the message.
fn plain_text(body: &str) -> Option<String> {
    let t = body.trim();
    if t.is_empty() || t.len() > MAX_TEXT || t.starts_with(['<', '{', '[']) {
        return None;
    }
    Some(t.to_owned())
}

/// `2026-Oct-05 12:34:00+0000 UTC` (WSO2), or RFC 3339.
fn parse_next_access_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t.strip_suffix("UTC").map_or(t, str::trim_end);
    DateTime::parse_from_str(t, "%Y-%b-%d %H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(t))
        .ok()
        .map(|dt| dt.timestamp())
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if (400..500).contains(&status) => "Client Error",
        _ if (500..600).contains(&status) => "Server Error",
        _ => "Unexpected Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_missing_fixture() {
        let e = parse_error(403, fixture!("erreur_900908_api_non_souscrite.json"));
        assert_eq!(e.code, "900908");
        // "Resource forbidden " (trailing space, as the gateway writes it) and the description.
        assert_eq!(
            e.message,
            "Resource forbidden: This application has no subscription to the API it called."
        );
        assert_eq!(e.next_access_time, None);
        assert!(!e.is_throttled());
    }

    #[test]
    fn adam_errors() {
        let e = parse_error(400, fixture!("erreur_ADAM-ERR0123.json"));
        assert_eq!(e.code, "ADAM-ERR0123");
        assert!(e.message.starts_with("La date de début demandée"));
        assert!(!e.is_throttled());
        let e = parse_error(403, fixture!("erreur_ADAM-DC-0008.json"));
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (
                403,
                "ADAM-DC-0008",
                "No consent can be found for this customer and this usage point"
            )
        );
    }

    #[test]
    fn no_measure_found() {
        let e = parse_error(404, fixture!("erreur_aucune_mesure.json"));
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (
                404,
                "no_data_found",
                "no measure found for this usage point"
            )
        );
    }

    #[test]
    fn throttled_json_fault() {
        let e = parse_error(429, fixture!("erreur_900807_quota.json"));
        assert_eq!(e.code, "900807");
        assert!(e
            .message
            .starts_with("Message throttled out: You have exceeded your quota"));
        assert_eq!(
            e.next_access_time,
            Some(
                DateTime::parse_from_rfc3339("2026-10-05T12:34:00Z")
                    .unwrap()
                    .timestamp()
            )
        );
        assert!(e.is_throttled());
        // Flat, with the code as a string.
        let e = parse_error(
            429,
            r#"{"code":"900807","message":"Message throttled out","nextAccessTime":"2026-10-05T12:34:00Z"}"#,
        );
        assert_eq!(e.code, "900807");
        assert_eq!(e.message, "Message throttled out");
        assert!(e.next_access_time.is_some());
    }

    #[test]
    fn throttled_xml_fault() {
        let body = "<am:fault xmlns:am=\"http://wso2.org/apimanager\"><am:code>900807</am:code>\
                    <am:message>Message throttled out</am:message><am:description>You have \
                    exceeded your quota</am:description><am:nextAccessTime>2026-Oct-05 \
                    12:34:00+0000 UTC</am:nextAccessTime></am:fault>";
        let e = parse_error(429, body);
        assert_eq!(e.code, "900807");
        assert_eq!(
            e.message,
            "Message throttled out: You have exceeded your quota"
        );
        assert!(e.next_access_time.is_some());
    }

    #[test]
    fn swagger_shapes() {
        let e = parse_error(429, r#"{"code": "429", "message": "SLA dépassé"}"#);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("429", "SLA dépassé")
        );
        let e = parse_error(
            404,
            r#"[{"code": "SGT404", "message": "Pas de mesure trouvée pour ce point"}]"#,
        );
        assert_eq!(e.code, "SGT404");
        let e = parse_error(500, r#"{"code": "E1", "libelle": "Erreur technique"}"#);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("E1", "Erreur technique")
        );
        let e = parse_error(
            401,
            r#"{"error": {"code": 401, "message": "Invalid token"}}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("401", "Invalid token")
        );
    }

    #[test]
    fn body_less_statuses_use_the_status() {
        let e = parse_error(503, "");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("503", "Service Unavailable")
        );
        let e = parse_error(429, "   ");
        assert_eq!(e.code, "429");
        assert!(e.is_throttled());
        // HTML is not leaked as the message; short plain text is kept.
        let e = parse_error(502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("502", "Bad Gateway")
        );
        let e = parse_error(500, "upstream timed out");
        assert_eq!(e.message, "upstream timed out");
        // JSON without a code keeps its message.
        let e = parse_error(500, r#"{"message": "boom"}"#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("500", "boom"));
        let e = parse_error(400, r#"{"code": "", "message": ""}"#);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("400", "Bad Request")
        );
        assert_eq!(e.to_string(), "Enedis error 400 (HTTP 400): Bad Request");
    }
}
