//! Enedis Data Connect 2026: planning of request windows (`dateDebut`/`dateFin`).
//!
//! Requests name Europe/Paris local days, `dateDebut` included and `dateFin` excluded. Load
//! curves are fetched in windows of at most 7 days, daily values in windows of at most a year
//! (365 days, which also fits a leap year's limit). No window reaches today (data stop at
//! yesterday) or starts before the history limit: 24 months + 15 days before the call for load
//! curves, 36 months + 15 days for daily values (Swagger), or a later day (e.g. the meter's
//! activation) given by the caller.

use chrono::{Days, Months, NaiveDate};

use crate::time::paris;

/// Most days of one load-curve request.
pub(crate) const LOAD_CURVE_MAX_DAYS: u32 = 7;
/// Most days of one daily (energy or max power) request.
pub(crate) const DAILY_MAX_DAYS: u32 = 365;
/// History served for load curves: months, plus [`HISTORY_EXTRA_DAYS`].
pub(crate) const LOAD_CURVE_HISTORY_MONTHS: u32 = 24;
/// History served for daily values: months, plus [`HISTORY_EXTRA_DAYS`].
pub(crate) const DAILY_HISTORY_MONTHS: u32 = 36;
/// Days of history beyond the months.
pub(crate) const HISTORY_EXTRA_DAYS: u64 = 15;

/// One request: local days `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Window {
    pub(crate) start: NaiveDate,
    pub(crate) end: NaiveDate,
}

impl Window {
    /// `dateDebut` (`YYYY-MM-DD`).
    pub(crate) fn date_debut(&self) -> String {
        self.start.format("%Y-%m-%d").to_string()
    }

    /// `dateFin` (`YYYY-MM-DD`, excluded).
    pub(crate) fn date_fin(&self) -> String {
        self.end.format("%Y-%m-%d").to_string()
    }

    /// How many days it covers (the tests check the gateway's limits with it).
    #[cfg(test)]
    pub(crate) fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }
}

/// The oldest day served when calling on `today`: `months` months and 15 days before it
/// ([`LOAD_CURVE_HISTORY_MONTHS`], [`DAILY_HISTORY_MONTHS`]).
pub(crate) fn history_limit(today: NaiveDate, months: u32) -> Option<NaiveDate> {
    today
        .checked_sub_months(Months::new(months))?
        .checked_sub_days(Days::new(HISTORY_EXTRA_DAYS))
}

/// Splits local days `[start, end)` into windows of at most `max_days` days (at least 1),
/// after clamping them to `[earliest, today)`. Empty when nothing is left.
pub(crate) fn plan(
    start: NaiveDate,
    end: NaiveDate,
    max_days: u32,
    today: NaiveDate,
    earliest: NaiveDate,
) -> Vec<Window> {
    let start = start.max(earliest);
    let end = end.min(today);
    let step = Days::new(u64::from(max_days.max(1)));
    let mut windows = Vec::new();
    let mut from = start;
    while from < end {
        let to = from.checked_add_days(step).map_or(end, |to| to.min(end));
        windows.push(Window {
            start: from,
            end: to,
        });
        from = to;
    }
    windows
}

/// Like [`plan`], for the days not in `fetched` only: each run of consecutive missing days is
/// split into windows of at most `max_days`, so no day already paid for is asked again.
pub(crate) fn plan_missing(
    start: NaiveDate,
    end: NaiveDate,
    max_days: u32,
    today: NaiveDate,
    earliest: NaiveDate,
    fetched: &std::collections::BTreeSet<NaiveDate>,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut run_start: Option<NaiveDate> = None;
    for window in plan(start, end, 1, today, earliest) {
        let day = window.start;
        match (fetched.contains(&day), run_start) {
            (false, None) => run_start = Some(day),
            (true, Some(from)) => {
                windows.extend(plan(from, day, max_days, today, earliest));
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = run_start {
        windows.extend(plan(from, end, max_days, today, earliest));
    }
    windows
}

/// Every day of a window.
pub(crate) fn days_of(window: &Window) -> impl Iterator<Item = NaiveDate> {
    paris::dates(window.start, window.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn spans(windows: &[Window]) -> Vec<(String, String)> {
        windows
            .iter()
            .map(|w| (w.date_debut(), w.date_fin()))
            .collect()
    }

    const FAR_PAST: &str = "2000-01-01";

    #[test]
    fn load_curve_windows_are_at_most_seven_days() {
        let w = plan(
            day("2026-09-01"),
            day("2026-09-20"),
            LOAD_CURVE_MAX_DAYS,
            day("2026-11-01"),
            day(FAR_PAST),
        );
        assert_eq!(
            spans(&w),
            [
                ("2026-09-01".into(), "2026-09-08".into()),
                ("2026-09-08".into(), "2026-09-15".into()),
                ("2026-09-15".into(), "2026-09-20".into()),
            ]
        );
        assert!(w.iter().all(|w| w.days() <= 7 && w.days() > 0));
    }

    #[test]
    fn exact_multiple_and_single_day() {
        let today = day("2026-11-01");
        let w = plan(
            day("2026-09-01"),
            day("2026-09-15"),
            7,
            today,
            day(FAR_PAST),
        );
        assert_eq!(w.len(), 2);
        let w = plan(
            day("2026-09-29"),
            day("2026-09-30"),
            7,
            today,
            day(FAR_PAST),
        );
        assert_eq!(spans(&w), [("2026-09-29".into(), "2026-09-30".into())]);
    }

    #[test]
    fn fixture_range_is_one_window() {
        // The fixtures asked 2026-09-29 .. 2026-10-01 (two days).
        let w = plan(
            day("2026-09-29"),
            day("2026-10-01"),
            7,
            day("2026-10-04"),
            day(FAR_PAST),
        );
        assert_eq!(spans(&w), [("2026-09-29".into(), "2026-10-01".into())]);
    }

    #[test]
    fn empty_and_reversed_ranges_give_nothing() {
        let today = day("2026-11-01");
        assert!(plan(
            day("2026-09-10"),
            day("2026-09-10"),
            7,
            today,
            day(FAR_PAST)
        )
        .is_empty());
        assert!(plan(
            day("2026-09-10"),
            day("2026-09-01"),
            7,
            today,
            day(FAR_PAST)
        )
        .is_empty());
    }

    #[test]
    fn never_beyond_yesterday() {
        let today = day("2026-10-05");
        let w = plan(
            day("2026-10-01"),
            day("2026-10-20"),
            7,
            today,
            day(FAR_PAST),
        );
        assert_eq!(spans(&w), [("2026-10-01".into(), "2026-10-05".into())]);
        // Entirely in the future, or today only: nothing.
        assert!(plan(
            day("2026-10-05"),
            day("2026-10-06"),
            7,
            today,
            day(FAR_PAST)
        )
        .is_empty());
        assert!(plan(
            day("2026-10-10"),
            day("2026-10-20"),
            7,
            today,
            day(FAR_PAST)
        )
        .is_empty());
    }

    #[test]
    fn never_before_the_history_limit() {
        let today = day("2026-10-05");
        let limit = history_limit(today, LOAD_CURVE_HISTORY_MONTHS).unwrap();
        assert_eq!(limit, day("2024-09-20"));
        let w = plan(day("2024-09-01"), day("2024-10-01"), 7, today, limit);
        assert_eq!(w[0].start, limit);
        assert_eq!(w.last().unwrap().end, day("2024-10-01"));
        // Entirely older than the limit: nothing.
        assert!(plan(day("2024-01-01"), day("2024-09-20"), 7, today, limit).is_empty());
        assert_eq!(
            history_limit(today, DAILY_HISTORY_MONTHS),
            Some(day("2023-09-20"))
        );
        // Month arithmetic clamps to the month's end.
        assert_eq!(
            history_limit(day("2028-02-29"), 12),
            Some(day("2027-02-13"))
        );
    }

    #[test]
    fn daily_windows_are_at_most_a_year() {
        let today = day("2026-10-05");
        let limit = history_limit(today, DAILY_HISTORY_MONTHS).unwrap();
        let w = plan(
            day("2020-01-01"),
            day("2030-01-01"),
            DAILY_MAX_DAYS,
            today,
            limit,
        );
        assert_eq!(w.first().unwrap().start, limit);
        assert_eq!(w.last().unwrap().end, today);
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|w| w.days() <= 365));
        assert!(w.windows(2).all(|p| p[0].end == p[1].start));
        // Covers a leap day without exceeding 365 days.
        let w = plan(
            day("2024-01-01"),
            day("2025-01-01"),
            DAILY_MAX_DAYS,
            today,
            day(FAR_PAST),
        );
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].end, day("2024-12-31"));
    }

    #[test]
    fn zero_max_days_still_progresses() {
        let w = plan(
            day("2026-09-01"),
            day("2026-09-04"),
            0,
            day("2026-10-01"),
            day(FAR_PAST),
        );
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn only_missing_days_are_planned() {
        let fetched: std::collections::BTreeSet<NaiveDate> =
            ["2026-09-03", "2026-09-04", "2026-09-12"]
                .into_iter()
                .map(day)
                .collect();
        let w = plan_missing(
            day("2026-09-01"),
            day("2026-09-22"),
            LOAD_CURVE_MAX_DAYS,
            day("2026-09-20"),
            day(FAR_PAST),
            &fetched,
        );
        assert_eq!(
            spans(&w),
            [
                ("2026-09-01".into(), "2026-09-03".into()),
                ("2026-09-05".into(), "2026-09-12".into()),
                ("2026-09-13".into(), "2026-09-20".into()),
            ]
        );
        let all: std::collections::BTreeSet<NaiveDate> = w
            .iter()
            .flat_map(days_of)
            .chain(fetched.iter().copied())
            .collect();
        assert_eq!(all.len(), 19, "every day before today, once");
        let none = plan_missing(
            day("2026-09-03"),
            day("2026-09-05"),
            7,
            day("2026-09-20"),
            day(FAR_PAST),
            &fetched,
        );
        assert!(none.is_empty());
    }
}
