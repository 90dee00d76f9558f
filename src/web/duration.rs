//! The consent duration: an ISO 8601 duration in whole years, months, weeks or days, at most
//! three years.
//!
//! It arrives as `duration=P1Y` on `/authorize`, is shown to the customer in French, is passed on
//! to Enedis as is (in canonical form), and gives the consent its expiry date. Only what Enedis'
//! consent accepts and a person can read is allowed: no time part (`T1H`), no fractions, no sign.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, LocalResult, Months, NaiveDateTime, TimeZone};
use chrono_tz::Europe::Paris;

/// Longest text accepted: `P36M` or `P1095D` are a few characters, and no valid duration needs
/// more than this; anything longer is rejected before being looked at.
const MAX_INPUT_LEN: usize = 32;

/// Three years in days counted the shortest way (no 29 February): see [`ConsentDuration::MAX`].
const MAX_DAYS: u64 = 3 * 365;

/// A month counted as its longest, for the [`ConsentDuration::MAX`] check of mixed durations.
const LONGEST_MONTH_DAYS: u64 = 31;

/// A duration that is not an acceptable consent duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
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
pub struct ConsentDuration {
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
    pub const MAX: ConsentDuration = ConsentDuration {
        years: 3,
        months: 0,
        days: 0,
    };

    /// A duration from its parts, normalised and checked like a parsed one.
    pub fn new(years: u32, months: u32, days: u32) -> Result<Self, DurationError> {
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

    pub fn years(&self) -> u32 {
        self.years
    }

    pub fn months(&self) -> u32 {
        self.months
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    /// When a consent given at `from_unix` (seconds) ends, in seconds.
    ///
    /// Calendar arithmetic on the wall clock in Paris, where the customers are: years and months
    /// first, the day of month clamped to the target month (31 January + 1 month = 28 or 29
    /// February), then days, keeping the time of day across daylight-saving changes. A time that
    /// does not exist that day (spring forward) moves one hour later; an ambiguous one (fall back)
    /// takes the earlier instant. `None` only outside chrono's range of dates.
    pub fn expires_at(&self, from_unix: i64) -> Option<i64> {
        let start = DateTime::from_timestamp(from_unix, 0)?.with_timezone(&Paris);
        let local = start
            .naive_local()
            .checked_add_months(Months::new(self.years * 12 + self.months))?
            .checked_add_days(Days::new(u64::from(self.days)))?;
        resolve_paris(local).map(|t| t.timestamp())
    }

    /// The duration in French, as shown to the customer ("1 an et 6 mois").
    pub fn french(&self) -> String {
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

fn resolve_paris(local: NaiveDateTime) -> Option<DateTime<chrono_tz::Tz>> {
    match Paris.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(earliest, _) => Some(earliest),
        // Paris' gaps are one hour long.
        LocalResult::None => Paris
            .from_local_datetime(&local.checked_add_signed(chrono::TimeDelta::hours(1))?)
            .earliest(),
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

        // (number, designator) pairs, numbers made of ASCII digits only.
        let mut components = Vec::with_capacity(3);
        let mut rest = body;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let designator = rest[digits..].chars().next().ok_or_else(malformed)?;
            if digits == 0 {
                return Err(malformed());
            }
            // At most 31 digits fit in the input; beyond u64 it is beyond three years anyway.
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::ExceedsMax)?;
            components.push((value, designator));
            rest = &rest[digits + designator.len_utf8()..];
        }

        let clamp = |v: u64| u32::try_from(v).map_err(|_| DurationError::ExceedsMax);
        if let [(weeks, 'W')] = components[..] {
            return ConsentDuration::new(0, 0, clamp(weeks.saturating_mul(7))?);
        }
        let (mut years, mut months, mut days) = (0, 0, 0);
        let mut order = 0;
        for (value, designator) in components {
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
    use super::*;

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
    fn default_is_one_year() {
        assert_eq!(ConsentDuration::default(), d(1, 0, 0));
        assert_eq!(ConsentDuration::default().to_string(), "P1Y");
    }
}
