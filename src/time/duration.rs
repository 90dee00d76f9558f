//! ISO 8601 durations, the two kinds the component reads and writes.
//!
//! - Clock durations, `PT` then hours, minutes, seconds (`PT30M`, `PT1H30M`, `PT1.5S`): the
//!   sampling interval of a series. [`format_clock`] writes the demo's live interval;
//!   [`clock_seconds`] reads Enedis' load-curve steps, whole seconds only.
//! - The consent duration ([`ConsentDuration`]): whole years, months, weeks or days, at most three
//!   years. It arrives as `duration=P1Y` on `/authorize`, is shown to the customer in French, is
//!   passed on to Enedis as is (in canonical form), and gives the consent its expiry date. Only
//!   what Enedis' consent accepts and a person can read is allowed: no time part (`T1H`), no
//!   fractions, no sign.
//! - Retention periods ([`parse_period`]): `P3Y`, `P18M`, `P30D`, `P1Y6M`: how long the audit
//!   log or the readings of an ended consent are kept. Counted generously (a year is 366 days, a
//!   month 31), so that nothing is deleted before the period a person reads has passed.
//!
//! All are read by one scanner of `(number, designator)` components ([`components`]), so they
//! agree on what a number is; each kind then says which designators, in which order, it takes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::paris;

// --- The scanner ------------------------------------------------------------------------------

/// The `(number, designator)` components of a duration's body (after `P` or `PT`), in order: a
/// number is ASCII digits, with a '.' for a fraction; its designator is the one character after
/// it. An item is `None` when a component lacks its number or its designator, and is the last.
/// Lazy, so that a caller meets the components' problems in the order they are written.
fn components(body: &str) -> impl Iterator<Item = Option<(&str, char)>> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest.filter(|r| !r.is_empty())?;
        let n = text
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let item = text[n..]
            .chars()
            .next()
            .filter(|_| n > 0)
            .map(|designator| (&text[..n], designator));
        rest = item.map(|(_, designator)| &text[n + designator.len_utf8()..]);
        Some(item)
    })
}

// --- Clock durations (`PT30M`) -----------------------------------------------------------------

/// `2s` → `PT2S`, `1500ms` → `PT1.5S`, `90s` → `PT1M30S`; to the millisecond, zero parts
/// omitted, `PT0S` for zero.
pub(crate) fn format_clock(d: Duration) -> String {
    let total_ms = d.as_millis();
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::from("PT");
    if h > 0 {
        out += &format!("{h}H");
    }
    if m > 0 {
        out += &format!("{m}M");
    }
    if s > 0 || ms > 0 || out == "PT" {
        if ms > 0 {
            let frac = format!("{ms:03}");
            out += &format!("{s}.{}S", frac.trim_end_matches('0'));
        } else {
            out += &format!("{s}S");
        }
    }
    out
}

/// A clock duration `PTnHnMnS` (any non-empty subset, in that order, each at most once; the
/// seconds may have a fraction of up to 9 digits): the inverse of [`format_clock`]. Surrounding
/// whitespace is ignored. `None` if malformed or beyond [`Duration`]. The tests' oracle for
/// [`format_clock`] (round trips); nothing parses fractional clocks otherwise.
/// A retention period: `P` then years, months, weeks, days (each at most once, in that order,
/// whole numbers), as at most about ten thousand years.
pub(crate) fn parse_period(text: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    let body = text.strip_prefix('P').filter(|b| !b.is_empty())?;
    let mut rank = 0;
    let mut total: u64 = 0;
    for component in components(body) {
        let (number, designator) = component?;
        let (r, days) = match designator {
            'Y' => (1, 366),
            'M' => (2, 31),
            'W' => (3, 7),
            'D' => (4, 1),
            _ => return None,
        };
        if r <= rank || number.contains('.') || number.len() > 7 {
            return None;
        }
        rank = r;
        let value: u64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(days * DAY)?)?;
    }
    (total > 0 && total <= 10_000 * 366 * DAY).then(|| Duration::from_secs(total))
}

#[cfg(test)]
pub(crate) fn parse_clock(text: &str) -> Option<Duration> {
    clock(text, true)
}

/// Seconds of a clock duration in whole hours, minutes and seconds (`PT30M`, `PT1H`, `PT10M`,
/// `PT60M`): Enedis' load-curve steps. `None` if malformed, fractional, zero or beyond `i64`.
pub(crate) fn clock_seconds(text: &str) -> Option<i64> {
    let d = clock(text, false)?;
    i64::try_from(d.as_secs()).ok().filter(|s| *s > 0)
}

fn clock(text: &str, fractions: bool) -> Option<Duration> {
    let body = text.trim().strip_prefix("PT")?;
    if body.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut order = 0;
    for component in components(body) {
        let (number, designator) = component?;
        let (rank, unit) = match designator {
            'H' => (1, 3600),
            'M' => (2, 60),
            'S' => (3, 1),
            _ => return None,
        };
        if rank <= order {
            return None;
        }
        order = rank;
        let (whole, fraction) = match number.split_once('.') {
            None => (number, None),
            Some((whole, fraction)) if fractions && designator == 'S' => (whole, Some(fraction)),
            Some(_) => return None,
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) {
            return None;
        }
        let nanos = match fraction {
            None => 0,
            Some(f) if digits(f) && f.len() <= 9 => {
                let scale = 10u32.pow(9 - u32::try_from(f.len()).ok()?);
                f.parse::<u32>().ok()?.checked_mul(scale)?
            }
            Some(_) => return None,
        };
        let seconds = whole.parse::<u64>().ok()?.checked_mul(unit)?;
        total = total
            .checked_add(Duration::from_secs(seconds))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))?;
    }
    Some(total)
}

// --- Consent durations (`P1Y6M`) ---------------------------------------------------------------

/// Longest text accepted: `P36M` or `P1095D` are a few characters, and no valid duration needs
/// more than this; anything longer is rejected before being looked at.
const MAX_INPUT_LEN: usize = 32;

/// Three years in days counted the shortest way (no 29 February): see [`ConsentDuration::MAX`].
const MAX_DAYS: u64 = 3 * 365;

/// A month counted as its longest, for the [`ConsentDuration::MAX`] check of mixed durations.
const LONGEST_MONTH_DAYS: u64 = 31;

/// A duration that is not an acceptable consent duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("duration too long to be valid ({0} bytes)")]
    InputTooLong(usize),
    #[error("a duration starts with 'P' (as in P1Y)")]
    MissingDesignator,
    #[error("negative durations are not accepted")]
    Negative,
    #[error("a duration needs at least one component after 'P' (as in P1Y)")]
    NoComponent,
    #[error("time components (after 'T') are not accepted, only years, months, weeks or days")]
    TimePart,
    #[error("fractional components are not accepted")]
    Fractional,
    #[error(
        "malformed duration {0:?}: expected nY, nM, nD in that order, each at most once, or nW \
         alone"
    )]
    Malformed(String),
    #[error("the duration must not be zero")]
    Zero,
    #[error("the duration must be at most three years (P3Y)")]
    ExceedsMax,
}

/// A consent duration, normalised: months below 12, weeks counted as days.
///
/// Normalising does not change the meaning: months and years are added together as one number of
/// months (see [`ConsentDuration::expires_at`]), so `P18M` and `P1Y6M` end on the same day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConsentDuration {
    years: u32,
    months: u32,
    days: u32,
}

impl ConsentDuration {
    /// Three years, the longest consent accepted.
    ///
    /// A duration is within it when it cannot end later than three years after *any* start date,
    /// so that the answer does not depend on the day it is asked:
    /// - whole years and months: at most 36 months (`P3Y`, `P36M`, `P2Y12M`; not `P37M`);
    /// - with days: counting each month as 31 days, at most 1095 days (3 × 365, the shortest
    ///   three years). `P1095D` and `P2Y11M1D` are accepted; `P3Y1D` and `P1096D` are not
    ///   (`P1096D` is within three years only when they contain a 29 February), nor is
    ///   `P2Y11M30D`, which would be within three years but is beyond the simple rule.
    ///
    /// [`ConsentDuration::new`] applies the rule; the tests check this bound against it.
    #[cfg(test)]
    pub(crate) const MAX: ConsentDuration = ConsentDuration {
        years: 3,
        months: 0,
        days: 0,
    };

    /// A duration from its parts, normalised and checked like a parsed one.
    pub(crate) fn new(years: u32, months: u32, days: u32) -> Result<Self, DurationError> {
        let total_months = u64::from(years) * 12 + u64::from(months);
        let days = u64::from(days);
        if total_months == 0 && days == 0 {
            return Err(DurationError::Zero);
        }
        let within_max = if days == 0 {
            total_months <= 36
        } else {
            total_months * LONGEST_MONTH_DAYS + days <= MAX_DAYS
        };
        if !within_max {
            return Err(DurationError::ExceedsMax);
        }
        // Both fit: total_months ≤ 36 and days ≤ 1095 here.
        let (Ok(total_months), Ok(days)) = (u32::try_from(total_months), u32::try_from(days))
        else {
            return Err(DurationError::ExceedsMax);
        };
        Ok(ConsentDuration {
            years: total_months / 12,
            months: total_months % 12,
            days,
        })
    }

    /// When a consent given at `from_unix` (seconds) ends, in seconds.
    ///
    /// Calendar arithmetic on the wall clock in Paris, where the customers are: years and months
    /// first, the day of month clamped to the target month (31 January + 1 month = 28 or 29
    /// February), then days, keeping the time of day across daylight-saving changes. A time that
    /// does not exist that day (spring forward) moves one hour later; an ambiguous one (fall back)
    /// takes the earlier instant. `None` only outside chrono's range of dates.
    pub(crate) fn expires_at(&self, from_unix: i64) -> Option<i64> {
        paris::add_calendar(
            from_unix,
            self.years * 12 + self.months,
            u64::from(self.days),
        )
    }

    /// The duration in French, as shown to the customer ("1 an et 6 mois").
    pub(crate) fn french(&self) -> String {
        let mut parts = Vec::with_capacity(3);
        match self.years {
            0 => {}
            1 => parts.push("1 an".to_owned()),
            n => parts.push(format!("{n} ans")),
        }
        if self.months > 0 {
            // "mois" is the same in the singular and plural.
            parts.push(format!("{} mois", self.months));
        }
        match self.days {
            0 => {}
            1 => parts.push("1 jour".to_owned()),
            n => parts.push(format!("{n} jours")),
        }
        match parts.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, init)) => format!("{} et {last}", init.join(", ")),
        }
    }
}

impl Default for ConsentDuration {
    /// One year, when the application does not ask for a duration.
    fn default() -> Self {
        ConsentDuration {
            years: 1,
            months: 0,
            days: 0,
        }
    }
}

impl fmt::Display for ConsentDuration {
    /// Canonical ISO 8601: `P1Y`, `P6M`, `P1Y6M`, `P30D`; zero parts omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        if self.years > 0 {
            write!(f, "{}Y", self.years)?;
        }
        if self.months > 0 {
            write!(f, "{}M", self.months)?;
        }
        if self.days > 0 {
            write!(f, "{}D", self.days)?;
        }
        Ok(())
    }
}

impl FromStr for ConsentDuration {
    type Err = DurationError;

    /// `PnYnMnD` (any non-empty subset, in that order) or `PnW`; upper case, as ISO 8601 writes
    /// them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(DurationError::InputTooLong(s.len()));
        }
        if s.starts_with('-') {
            return Err(DurationError::Negative);
        }
        let Some(body) = s.strip_prefix('P') else {
            return Err(DurationError::MissingDesignator);
        };
        if body.is_empty() {
            return Err(DurationError::NoComponent);
        }
        if body.contains('T') {
            return Err(DurationError::TimePart);
        }
        if body.contains(['.', ',']) {
            return Err(DurationError::Fractional);
        }
        if body.contains('-') {
            return Err(DurationError::Negative);
        }
        let malformed = || DurationError::Malformed(s.to_owned());

        // (number, designator) pairs, numbers made of ASCII digits only (no '.' is left here).
        let mut parts = Vec::with_capacity(3);
        for component in components(body) {
            let (number, designator) = component.ok_or_else(malformed)?;
            // At most 31 digits fit in the input; beyond u64 it is beyond three years anyway.
            let value: u64 = number.parse().map_err(|_| DurationError::ExceedsMax)?;
            parts.push((value, designator));
        }

        let clamp = |v: u64| u32::try_from(v).map_err(|_| DurationError::ExceedsMax);
        if let [(weeks, 'W')] = parts[..] {
            return ConsentDuration::new(0, 0, clamp(weeks.saturating_mul(7))?);
        }
        let (mut years, mut months, mut days) = (0, 0, 0);
        let mut order = 0;
        for (value, designator) in parts {
            let (rank, slot) = match designator {
                'Y' => (1, &mut years),
                'M' => (2, &mut months),
                'D' => (3, &mut days),
                _ => return Err(malformed()),
            };
            if rank <= order {
                return Err(malformed());
            }
            order = rank;
            *slot = clamp(value)?;
        }
        ConsentDuration::new(years, months, days)
    }
}

#[cfg(test)]
mod tests {
    use super::paris::TZ as Paris;
    use super::*;
    use chrono::{DateTime, LocalResult, TimeZone};
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<ConsentDuration, DurationError> {
        s.parse()
    }

    fn d(years: u32, months: u32, days: u32) -> ConsentDuration {
        ConsentDuration {
            years,
            months,
            days,
        }
    }

    /// Unix time of a wall-clock time in Paris.
    fn paris(y: i32, mo: u32, day: u32, h: u32, mi: u32) -> i64 {
        match Paris.with_ymd_and_hms(y, mo, day, h, mi, 0) {
            LocalResult::Single(t) => t.timestamp(),
            other => panic!("not a single local time: {other:?}"),
        }
    }

    fn paris_local(unix: i64) -> String {
        DateTime::from_timestamp(unix, 0)
            .map(|t| {
                t.with_timezone(&Paris)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_default()
    }

    #[test]
    fn parses_and_displays_canonically() {
        for (input, parsed, shown) in [
            ("P1Y", d(1, 0, 0), "P1Y"),
            ("P6M", d(0, 6, 0), "P6M"),
            ("P1Y6M", d(1, 6, 0), "P1Y6M"),
            ("P30D", d(0, 0, 30), "P30D"),
            ("P1Y2M3D", d(1, 2, 3), "P1Y2M3D"),
            ("P1Y3D", d(1, 0, 3), "P1Y3D"),
            ("P18M", d(1, 6, 0), "P1Y6M"),
            ("P36M", d(3, 0, 0), "P3Y"),
            ("P2Y12M", d(3, 0, 0), "P3Y"),
            ("P2W", d(0, 0, 14), "P14D"),
            ("P01Y", d(1, 0, 0), "P1Y"),
            ("P0Y6M", d(0, 6, 0), "P6M"),
            ("P1095D", d(0, 0, 1095), "P1095D"),
        ] {
            assert_eq!(parse(input), Ok(parsed), "{input}");
            assert_eq!(parsed.to_string(), shown, "{input}");
            assert_eq!(parse(shown), Ok(parsed), "{shown} round trip");
        }
    }

    #[test]
    fn rejects_what_is_not_a_plain_duration() {
        use DurationError::*;
        for (input, err) in [
            ("", Empty),
            ("P", NoComponent),
            ("1Y", MissingDesignator),
            ("p1y", MissingDesignator),
            ("P1y", Malformed("P1y".into())),
            ("-P1Y", Negative),
            ("P-1Y", Negative),
            ("PT1H", TimePart),
            ("P1DT12H", TimePart),
            ("P1YT", TimePart),
            ("P0.5Y", Fractional),
            ("P1,5Y", Fractional),
            ("P0D", Zero),
            ("P0Y0M0D", Zero),
            ("P0W", Zero),
            ("PY", Malformed("PY".into())),
            ("P1", Malformed("P1".into())),
            ("P1M1Y", Malformed("P1M1Y".into())),
            ("P1Y1Y", Malformed("P1Y1Y".into())),
            ("P1W1D", Malformed("P1W1D".into())),
            ("P1X", Malformed("P1X".into())),
            ("P+1Y", Malformed("P+1Y".into())),
            ("P 1Y", Malformed("P 1Y".into())),
            ("P1Y ", Malformed("P1Y ".into())),
            ("P١Y", Malformed("P١Y".into())),
            ("P1é", Malformed("P1é".into())),
            ("garbage", MissingDesignator),
            ("P99999999999999999999999999999Y", ExceedsMax),
            // Components are met in order: the overflow before the missing designator.
            ("P99999999999999999999999Y1", ExceedsMax),
            (
                "P1Y99999999999999999999999",
                Malformed("P1Y99999999999999999999999".into()),
            ),
        ] {
            assert_eq!(parse(input), Err(err), "{input:?}");
        }
        let long = format!("P{}Y", "0".repeat(40));
        assert_eq!(parse(&long), Err(InputTooLong(42)));
    }

    #[test]
    fn max_is_three_years_for_any_start_date() {
        use DurationError::ExceedsMax;
        for ok in [
            "P3Y", "P36M", "P2Y12M", "P1095D", "P156W", "P2Y11M1D", "P35M10D",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for too_long in [
            "P3Y1D",
            "P37M",
            "P4Y",
            "P1096D",
            "P157W",
            "P2Y11M30D",
            "P3Y1M",
        ] {
            assert_eq!(parse(too_long), Err(ExceedsMax), "{too_long}");
        }
        assert_eq!(ConsentDuration::MAX.to_string(), "P3Y");
        assert_eq!(ConsentDuration::new(0, 0, u32::MAX), Err(ExceedsMax));
        assert_eq!(ConsentDuration::new(u32::MAX, u32::MAX, 0), Err(ExceedsMax));

        // The longest accepted durations, for every number of months, end no later than
        // three years after every start in a four-year cycle (29 February, month ends, DST).
        let longest: Vec<_> = (0..36u32)
            .map(|m| d(m / 12, m % 12, 1095 - 31 * m))
            .chain([ConsentDuration::MAX])
            .collect();
        for duration in &longest {
            assert_eq!(parse(&duration.to_string()), Ok(*duration));
        }
        let first = paris(2023, 1, 1, 12, 0);
        for day in 0..4 * 366 {
            let start = first + day * 86_400;
            let limit = ConsentDuration::MAX.expires_at(start);
            for duration in &longest {
                assert!(
                    duration.expires_at(start) <= limit,
                    "{duration} from {}",
                    paris_local(start)
                );
            }
        }
    }

    #[test]
    fn expires_at_uses_the_paris_calendar() {
        let cases = [
            // Plain year, across a 29 February.
            (paris(2023, 3, 15, 10, 0), "P1Y", "2024-03-15 10:00 CET"),
            // Month end clamped.
            (paris(2024, 1, 31, 10, 0), "P1M", "2024-02-29 10:00 CET"),
            (paris(2023, 1, 31, 10, 0), "P1M", "2023-02-28 10:00 CET"),
            (paris(2024, 2, 29, 10, 0), "P1Y", "2025-02-28 10:00 CET"),
            // Months before days: 31 Jan + 1M = 29 Feb, + 1D = 1 Mar.
            (paris(2024, 1, 31, 10, 0), "P1M1D", "2024-03-01 10:00 CET"),
            // Same wall-clock time across daylight-saving time.
            (paris(2024, 1, 15, 9, 30), "P6M", "2024-07-15 09:30 CEST"),
            (paris(2024, 3, 30, 23, 0), "P1D", "2024-03-31 23:00 CEST"),
            // Midnight UTC is 01:00 in Paris in winter: the local date is what counts.
            (paris(2024, 1, 1, 0, 30), "P1M", "2024-02-01 00:30 CET"),
            (paris(2024, 1, 1, 12, 0), "P2W", "2024-01-15 12:00 CET"),
            // 02:30 does not exist on 31 March 2024: one hour later.
            (paris(2024, 3, 30, 2, 30), "P1D", "2024-03-31 03:30 CEST"),
        ];
        for (start, duration, expected) in cases {
            let end = parse(duration).ok().and_then(|d| d.expires_at(start));
            assert_eq!(
                end.map(paris_local).as_deref(),
                Some(expected),
                "{duration} from {}",
                paris_local(start)
            );
        }
        // 02:30 happens twice on 27 October 2024: the first one (CEST).
        let start = paris(2024, 10, 26, 2, 30);
        let end = d(0, 0, 1).expires_at(start);
        assert_eq!(
            end.map(paris_local).as_deref(),
            Some("2024-10-27 02:30 CEST")
        );
        assert_eq!(end, Some(start + 86_400));
        // Out of chrono's range.
        assert_eq!(ConsentDuration::MAX.expires_at(i64::MAX), None);
    }

    #[test]
    fn french_wording() {
        for (duration, french) in [
            (d(1, 0, 0), "1 an"),
            (d(2, 0, 0), "2 ans"),
            (d(0, 6, 0), "6 mois"),
            (d(0, 1, 0), "1 mois"),
            (d(1, 6, 0), "1 an et 6 mois"),
            (d(0, 0, 30), "30 jours"),
            (d(0, 0, 1), "1 jour"),
            (d(1, 0, 1), "1 an et 1 jour"),
            (d(1, 2, 3), "1 an, 2 mois et 3 jours"),
        ] {
            assert_eq!(duration.french(), french);
        }
    }

    #[test]
    fn retention_periods_count_generously() {
        let days = |text: &str| parse_period(text).map(|d| d.as_secs() / 86_400);
        assert_eq!(days("P3Y"), Some(3 * 366));
        assert_eq!(days("P30D"), Some(30));
        assert_eq!(days("P1Y6M"), Some(366 + 6 * 31));
        assert_eq!(days("P2W"), Some(14));
        for bad in [
            "",
            "P",
            "3Y",
            "P0D",
            "P1D1Y",
            "P1.5Y",
            "PT1H",
            "P1Y1Y",
            "-P1Y",
            "P99999999Y",
            "P1X",
        ] {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_is_one_year() {
        assert_eq!(ConsentDuration::default(), d(1, 0, 0));
        assert_eq!(ConsentDuration::default().to_string(), "P1Y");
    }

    /// Moved from the demo source, which writes its live interval so.
    #[test]
    fn clock_durations_are_written_to_the_millisecond() {
        assert_eq!(format_clock(Duration::from_secs(2)), "PT2S");
        assert_eq!(format_clock(Duration::from_millis(1500)), "PT1.5S");
        assert_eq!(format_clock(Duration::from_secs(90)), "PT1M30S");
        assert_eq!(format_clock(Duration::from_secs(3600)), "PT1H");
        assert_eq!(format_clock(Duration::ZERO), "PT0S");
        assert_eq!(
            format_clock(Duration::from_millis(3_723_050)),
            "PT1H2M3.05S"
        );
    }

    /// The step cases of the Enedis parser, which reads its steps so.
    #[test]
    fn clock_seconds_are_whole_and_positive() {
        assert_eq!(clock_seconds("PT30M"), Some(1800));
        assert_eq!(clock_seconds("PT10M"), Some(600));
        assert_eq!(clock_seconds("PT60M"), Some(3600));
        assert_eq!(clock_seconds("PT1H"), Some(3600));
        assert_eq!(clock_seconds("PT1H30M"), Some(5400));
        assert_eq!(clock_seconds(" PT30S "), Some(30));
        for bad in [
            "P1D",
            "PT",
            "PT0M",
            "PTM",
            "PT-5M",
            "PT5X",
            "30",
            "PT99999999999999999999H",
            "PT1.5S",
            "PT1.0S",
            "PT1.5M",
            "PT30M1H",
            "PT1H1H",
            "PT 30M",
            "pt30m",
            "PT.5S",
        ] {
            assert_eq!(clock_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn clock_durations_read_fractions_of_seconds_only() {
        assert_eq!(parse_clock("PT1.5S"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_clock("PT0S"), Some(Duration::ZERO));
        assert_eq!(parse_clock("PT1M0.000000001S"), Some(Duration::new(60, 1)));
        for bad in [
            "PT1.5M",
            "PT1.S",
            "PT.5S",
            "PT1.5.5S",
            "PT1.0000000001S",
            "PT1,5S",
        ] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn clock_durations_round_trip(ms in 0u64..10 * 24 * 3_600_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_clock(&format_clock(d)), Some(d));
        }

        #[test]
        fn whole_clock_durations_read_as_seconds(s in 1u64..10 * 24 * 3600) {
            let text = format_clock(Duration::from_secs(s));
            prop_assert_eq!(clock_seconds(&text), i64::try_from(s).ok());
        }

        #[test]
        fn consent_durations_round_trip(years in 0u32..4, months in 0u32..40, days in 0u32..1200) {
            if let Ok(d) = ConsentDuration::new(years, months, days) {
                prop_assert_eq!(d.to_string().parse::<ConsentDuration>(), Ok(d));
                prop_assert!(d.months < 12);
            }
        }

        #[test]
        fn consent_durations_parse_never_panics(text in "[-PTYMWD0-9.,]{0,12}") {
            let _ = text.parse::<ConsentDuration>();
            let _ = parse_clock(&text);
        }
    }
}
