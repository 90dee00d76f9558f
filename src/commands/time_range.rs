//! Dates and ranges in command forms.
//!
//! Instants are ISO 8601 with an offset (`2026-09-29T00:00:00+02:00`, `…Z`, fractions allowed);
//! a bare date means local midnight in Europe/Paris, the time zone of the meters we serve.
//! Ranges are half-open: `[start, end)`.

use chrono::{DateTime, NaiveDate};

use crate::request::error::RequestError;
use crate::time::{now, paris};

/// Longest range one request may ask for; longer ones are surely mistakes.
pub(crate) const MAX_SPAN_DAYS: i64 = 366 * 20;

/// A half-open range of unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl Range {
    /// Checks order and span; `end_field` is named in the error.
    pub(crate) fn new(start: i64, end: i64, end_field: &str) -> Result<Range, RequestError> {
        if end <= start {
            return Err(RequestError::bad_request(format!(
                "{end_field}: must be after the start of the range"
            )));
        }
        if end - start > MAX_SPAN_DAYS * 86_400 {
            return Err(RequestError::bad_request(format!(
                "{end_field}: the range may not exceed {MAX_SPAN_DAYS} days"
            )));
        }
        Ok(Range { start, end })
    }
}

/// An instant from a form field: ISO 8601 with offset, or a date (local midnight, Paris).
pub(crate) fn parse_instant(field: &str, text: &str) -> Result<i64, RequestError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    // ISO 8601 also allows a space-less offset such as +0200.
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(t.timestamp());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return paris::midnight(date).ok_or_else(|| bad_date(field, text));
    }
    Err(bad_date(field, text))
}

/// A `YYYY-MM-DD` field (generation-1 commands): local midnight in Paris.
pub(crate) fn parse_date(field: &str, text: &str) -> Result<i64, RequestError> {
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(paris::midnight)
        .ok_or_else(|| {
            RequestError::bad_request(format!("{field}: {text:?} is not a date (YYYY-MM-DD)"))
        })
}

fn bad_date(field: &str, text: &str) -> RequestError {
    RequestError::bad_request(format!(
        "{field}: {text:?} is not an ISO 8601 date-time with offset (e.g. 2026-09-29T00:00:00+02:00) or a date (YYYY-MM-DD)"
    ))
}

/// `now - days` and `now` formatted for form defaults, with the Paris offset.
pub(crate) fn default_instants(days: i64) -> (String, String) {
    let now = now();
    let format = |t: i64| paris::rfc3339(t).unwrap_or_default();
    (
        format(now.saturating_sub(days.saturating_mul(86_400))),
        format(now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_with_offsets() {
        assert_eq!(
            parse_instant("s", "2026-09-29T00:00:00+02:00").unwrap(),
            1_790_632_800
        );
        assert_eq!(
            parse_instant("s", "2026-09-28T22:00:00Z").unwrap(),
            1_790_632_800
        );
        assert_eq!(
            parse_instant("s", "2026-09-28T22:00:00.123456+00:00").unwrap(),
            1_790_632_800
        );
        assert_eq!(
            parse_instant("s", "2026-09-29T00:00:00+0200").unwrap(),
            1_790_632_800
        );
    }

    #[test]
    fn dates_are_paris_midnight() {
        assert_eq!(parse_instant("s", "2026-09-29").unwrap(), 1_790_632_800);
        // Winter time: UTC+1.
        assert_eq!(parse_date("s", "2026-12-01").unwrap(), 1_796_079_600);
        // The day clocks go back still starts at 00:00 +02:00.
        assert_eq!(parse_date("s", "2026-10-25").unwrap(), 1_792_879_200);
    }

    #[test]
    fn bad_input_names_the_field() {
        for text in ["yesterday", "2026-13-01", "2026-09-29T00:00:00", ""] {
            let e = parse_instant("start_time", text).unwrap_err().to_string();
            assert!(e.contains("start_time"), "{e}");
        }
        let e = parse_date("end_date", "2026-09-29T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(e.contains("end_date"), "{e}");
    }

    #[test]
    fn ranges() {
        assert!(Range::new(10, 20, "end").is_ok());
        let e = Range::new(20, 20, "end_time").unwrap_err().to_string();
        assert!(e.contains("end_time"));
        assert!(Range::new(0, MAX_SPAN_DAYS * 86_400 + 1, "end").is_err());
        assert!(Range::new(0, 10 * 365 * 86_400, "end").is_ok());
    }
}
