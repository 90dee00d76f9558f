//! The Europe/Paris calendar: the days of the meters we serve, as Enedis counts them.
//!
//! A day is the UTC interval between two local midnights: 24 hours, but 23 on the last Sunday of
//! March and 25 on the last Sunday of October. Paris changes its clocks at 01:00 UTC (02:00 → 03:00
//! in spring, 03:00 → 02:00 in autumn), so local midnight always exists exactly once; [`midnight`]
//! still goes through [`resolve`] like any other wall-clock time rather than assuming it.
//!
//! One rule turns a wall-clock time into an instant, for every caller ([`resolve`]):
//! - a time repeated by the autumn change takes its first occurrence, unless that is not after
//!   the instant the caller says it must follow (the previous point of a series), then its second;
//! - a time skipped by the spring change (which should not be asked for) is read with the offset
//!   in force just before the gap: one hour later on the wall clock (02:30 → 03:30 CEST).

use chrono::{
    DateTime, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone,
};
use chrono_tz::Tz;

/// The zone of the meters' days and of Enedis' naive local timestamps.
pub(crate) const TZ: Tz = chrono_tz::Europe::Paris;

/// The wall-clock time in Paris at instant `t` (unix seconds); `None` outside chrono's range.
pub(crate) fn local(t: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(t, 0).map(|utc| utc.with_timezone(&TZ).naive_local())
}

/// The Paris date at instant `t` (unix seconds); `None` outside chrono's range.
pub(crate) fn date_of(t: i64) -> Option<NaiveDate> {
    local(t).map(|l| l.date())
}

/// Today's date in Paris.
pub(crate) fn today() -> NaiveDate {
    chrono::Utc::now().with_timezone(&TZ).date_naive()
}

/// Unix seconds of the Paris wall-clock time `local`, by the module's one rule: a repeated
/// (autumn) time takes its first occurrence unless that is not after `after`, then its second;
/// a skipped (spring) time is read with the offset in force before the gap. `None` only outside
/// chrono's range.
pub(crate) fn resolve(local: NaiveDateTime, after: Option<i64>) -> Option<i64> {
    match TZ.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.timestamp()),
        LocalResult::Ambiguous(a, b) => {
            let (first, second) = (
                a.timestamp().min(b.timestamp()),
                a.timestamp().max(b.timestamp()),
            );
            Some(match after {
                Some(p) if first <= p => second,
                _ => first,
            })
        }
        LocalResult::None => {
            // Gaps are an hour long in Paris; six hours before is safely outside it.
            let before = local.checked_sub_signed(TimeDelta::hours(6))?;
            let offset = TZ.offset_from_local_datetime(&before).earliest()?.fix();
            let utc = local
                .checked_sub_signed(TimeDelta::seconds(i64::from(offset.local_minus_utc())))?;
            Some(utc.and_utc().timestamp())
        }
    }
}

/// Unix seconds of the local midnight starting `date`.
pub(crate) fn midnight(date: NaiveDate) -> Option<i64> {
    resolve(date.and_time(NaiveTime::MIN), None)
}

/// The first instant after `now` whose Paris wall-clock time is `time`: today's, or tomorrow's
/// if today's has passed. On the spring day a `time` inside the gap is read one hour later (see
/// [`resolve`]) rather than skipped.
pub(crate) fn next_at(time: NaiveTime, now: i64) -> Option<i64> {
    let today = date_of(now)?;
    [Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
        .filter_map(|day| resolve(day.and_time(time), None))
        .find(|t| *t > now)
}

/// Instant `from` plus `months` then `days` on the Paris wall clock: the day of month clamped to
/// the target month (31 January + 1 month = 28 or 29 February), the time of day kept across
/// daylight-saving changes and resolved by [`resolve`]. `None` only outside chrono's range.
pub(crate) fn add_calendar(from: i64, months: u32, days: u64) -> Option<i64> {
    let wall = local(from)?
        .checked_add_months(Months::new(months))?
        .checked_add_days(Days::new(days))?;
    resolve(wall, None)
}

/// Instant `t` as RFC 3339 with its Paris offset, to the second (`2026-09-29T00:00:00+02:00`).
pub(crate) fn rfc3339(t: i64) -> Option<String> {
    DateTime::from_timestamp(t, 0).map(|utc| {
        utc.with_timezone(&TZ)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    })
}

/// One Paris day as a UTC interval `[start, end)`: 23, 24 or 25 hours long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalDay {
    pub(crate) date: NaiveDate,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl LocalDay {
    /// The day of `date`; `None` only for dates chrono cannot represent.
    pub(crate) fn of(date: NaiveDate) -> Option<LocalDay> {
        Some(LocalDay {
            date,
            start: midnight(date)?,
            end: midnight(date.succ_opt()?)?,
        })
    }

    /// The day that holds instant `t`.
    pub(crate) fn containing(t: i64) -> Option<LocalDay> {
        LocalDay::of(date_of(t)?)
    }

    /// The day after this one.
    pub(crate) fn next(self) -> Option<LocalDay> {
        LocalDay::of(self.date.succ_opt()?)
    }

    /// Its length in seconds: 82 800, 86 400 or 90 000 (what the tests check).
    #[cfg(test)]
    pub(crate) fn seconds(&self) -> i64 {
        self.end - self.start
    }
}

/// The days lying entirely in instants `[from, to)`, ascending.
pub(crate) fn days_within(from: i64, to: i64) -> Vec<LocalDay> {
    let mut days = Vec::new();
    let mut day = LocalDay::containing(from);
    while let Some(d) = day {
        if d.end > to {
            break;
        }
        if d.start >= from {
            days.push(d);
        }
        day = d.next();
    }
    days
}

/// The dates `[first, end)` of the days that instants `[start, end)` touch: the day holding
/// `start` through the day holding the last second before `end`. `None` if the range is empty
/// or out of chrono's range.
pub(crate) fn dates_covering(start: i64, end: i64) -> Option<(NaiveDate, NaiveDate)> {
    if end <= start {
        return None;
    }
    let first = date_of(start)?;
    let last = date_of(end - 1)?;
    Some((first, last.succ_opt()?))
}

/// Every date of `[start, end)`, ascending.
pub(crate) fn dates(start: NaiveDate, end: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    start.iter_days().take_while(move |d| *d < end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};
    use proptest::prelude::*;

    /// Unix seconds of an RFC 3339 instant.
    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn wall(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// The last Sunday of `month`, computed without the time-zone database: the EU rule.
    fn last_sunday(year: i32, month: u32) -> NaiveDate {
        let mut d = NaiveDate::from_ymd_opt(year, month, 31).unwrap();
        while d.weekday() != Weekday::Sun {
            d = d.pred_opt().unwrap();
        }
        d
    }

    /// The instant of the change on `date` (01:00 UTC, EU rule).
    fn change(date: NaiveDate) -> i64 {
        date.and_hms_opt(1, 0, 0).unwrap().and_utc().timestamp()
    }

    /// The length a Paris day must have by the EU rule.
    fn expected_hours(date: NaiveDate) -> i64 {
        if date == last_sunday(date.year(), 3) {
            23
        } else if date == last_sunday(date.year(), 10) {
            25
        } else {
            24
        }
    }

    /// Every invariant of the day holding `t`.
    fn check_instant(t: i64) {
        let d = LocalDay::containing(t).unwrap();
        assert!(d.start <= t && t < d.end, "{t} outside {d:?}");
        assert_eq!(
            local(d.start),
            Some(d.date.and_time(NaiveTime::MIN)),
            "{d:?}"
        );
        assert_eq!(date_of(t), Some(d.date));
        assert_eq!(d.seconds(), expected_hours(d.date) * 3600, "{d:?}");
        assert_eq!(midnight(d.date), Some(d.start));
        assert_eq!(date_of(d.start), Some(d.date));
        assert_eq!(date_of(d.end - 1), Some(d.date));
        assert_eq!(d.next().map(|n| n.start), Some(d.end));
        // A wall-clock time read after the second before it is the instant itself.
        assert_eq!(resolve(local(t).unwrap(), Some(t - 1)), Some(t));
    }

    #[test]
    fn spring_day_is_23_hours() {
        let d = LocalDay::of(day("2026-03-29")).unwrap();
        assert_eq!(d.start, at("2026-03-28T23:00:00Z"));
        assert_eq!(d.end, at("2026-03-29T22:00:00Z"));
        assert_eq!(d.seconds(), 23 * 3600);
        assert_eq!(
            rfc3339(d.start).as_deref(),
            Some("2026-03-29T00:00:00+01:00")
        );
        assert_eq!(rfc3339(d.end).as_deref(), Some("2026-03-30T00:00:00+02:00"));
        // 02:30 does not exist: read with the winter offset, i.e. 03:30 CEST.
        assert_eq!(
            resolve(wall("2026-03-29 02:30:00"), None),
            Some(at("2026-03-29T01:30:00Z"))
        );
        assert_eq!(
            resolve(wall("2026-03-29 03:00:00"), None),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            resolve(wall("2026-03-29 01:59:59"), None),
            Some(at("2026-03-29T00:59:59Z"))
        );
    }

    #[test]
    fn autumn_day_is_25_hours() {
        let d = LocalDay::of(day("2026-10-25")).unwrap();
        assert_eq!(d.start, at("2026-10-24T22:00:00Z"));
        assert_eq!(d.end, at("2026-10-25T23:00:00Z"));
        assert_eq!(d.seconds(), 25 * 3600);
        assert_eq!(
            rfc3339(d.start).as_deref(),
            Some("2026-10-25T00:00:00+02:00")
        );
        assert_eq!(rfc3339(d.end).as_deref(), Some("2026-10-26T00:00:00+01:00"));
        // 02:30 happens twice: the first one, unless the caller is already past it.
        let twice = wall("2026-10-25 02:30:00");
        let (first, second) = (at("2026-10-25T00:30:00Z"), at("2026-10-25T01:30:00Z"));
        assert_eq!(resolve(twice, None), Some(first));
        assert_eq!(resolve(twice, Some(first - 1800)), Some(first));
        assert_eq!(resolve(twice, Some(first)), Some(second));
        assert_eq!(resolve(twice, Some(first + 1800)), Some(second));
    }

    #[test]
    fn ordinary_days_are_24_hours() {
        for (date, start) in [
            ("2026-06-15", "2026-06-14T22:00:00Z"),
            ("2026-01-15", "2026-01-14T23:00:00Z"),
            ("2026-03-28", "2026-03-27T23:00:00Z"),
            ("2026-03-30", "2026-03-29T22:00:00Z"),
            ("2026-10-24", "2026-10-23T22:00:00Z"),
            ("2026-10-26", "2026-10-25T23:00:00Z"),
        ] {
            let d = LocalDay::of(day(date)).unwrap();
            assert_eq!(d.start, at(start), "{date}");
            assert_eq!(d.seconds(), 86_400, "{date}");
        }
    }

    /// Moved from the Enedis parser: daily values are stamped at these midnights.
    #[test]
    fn daily_values_follow_local_midnight_across_dst() {
        assert_eq!(
            midnight(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()),
            Some(at("2026-10-24T22:00:00Z"))
        );
        assert_eq!(
            midnight(NaiveDate::from_ymd_opt(2026, 10, 26).unwrap()),
            Some(at("2026-10-25T23:00:00Z"))
        );
    }

    /// Moved from the Enedis windows: the days a range of instants touches.
    #[test]
    fn instants_to_local_days() {
        // The e2e range: the fixture's two days in UTC.
        assert_eq!(
            dates_covering(at("2026-09-28T22:00:00Z"), at("2026-09-30T22:00:00Z")),
            Some((day("2026-09-29"), day("2026-10-01")))
        );
        // A partial day is fetched whole.
        assert_eq!(
            dates_covering(at("2026-09-29T10:00:00Z"), at("2026-09-29T10:30:00Z")),
            Some((day("2026-09-29"), day("2026-09-30")))
        );
        // 23:30Z on 2026-10-25 is already the 26th in Paris (CET).
        assert_eq!(
            dates_covering(at("2026-10-25T23:30:00Z"), at("2026-10-26T00:00:00Z")),
            Some((day("2026-10-26"), day("2026-10-27")))
        );
        assert_eq!(dates_covering(10, 10), None);
        assert_eq!(date_of(at("2026-09-28T22:00:00Z")), Some(day("2026-09-29")));
    }

    #[test]
    fn days_within_a_range() {
        let spring = LocalDay::of(day("2026-03-29")).unwrap();
        let after = LocalDay::of(day("2026-03-30")).unwrap();
        assert_eq!(
            days_within(at("2026-03-28T22:00:00Z"), at("2026-03-30T23:00:00Z")),
            [spring, after]
        );
        assert_eq!(days_within(spring.start, spring.end), [spring]);
        assert!(days_within(spring.start + 1, spring.end).is_empty());
        assert!(days_within(spring.start, spring.end - 1).is_empty());
        assert_eq!(
            dates(day("2026-03-28"), day("2026-03-31")).collect::<Vec<_>>(),
            [day("2026-03-28"), day("2026-03-29"), day("2026-03-30")]
        );
        assert_eq!(dates(day("2026-03-28"), day("2026-03-28")).count(), 0);
    }

    #[test]
    fn next_wall_clock_time() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        // 07:00 CET: today's 08:30.
        assert_eq!(
            next_at(t(8, 30), at("2026-11-21T06:00:00Z")),
            Some(at("2026-11-21T07:30:00Z"))
        );
        // Just past it: tomorrow's.
        assert_eq!(
            next_at(t(8, 30), at("2026-11-21T07:30:00Z")),
            Some(at("2026-11-22T07:30:00Z"))
        );
        // 02:30 on the spring day is read as 03:30 CEST, not skipped.
        assert_eq!(
            next_at(t(2, 30), at("2026-03-28T23:00:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        // 02:30 on the autumn day: its first occurrence; once past, tomorrow's.
        assert_eq!(
            next_at(t(2, 30), at("2026-10-24T22:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            next_at(t(2, 30), at("2026-10-25T00:30:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn calendar_arithmetic_keeps_the_wall_clock() {
        let from = at("2026-03-28T09:00:00Z"); // 10:00 CET
        assert_eq!(add_calendar(from, 0, 1), Some(at("2026-03-29T08:00:00Z")));
        assert_eq!(add_calendar(from, 1, 0), Some(at("2026-04-28T08:00:00Z")));
        assert_eq!(add_calendar(i64::MAX, 0, 1), None);
    }

    #[test]
    fn every_day_of_2020_to_2035_has_the_eu_length() {
        let mut d = LocalDay::of(day("2020-01-01")).unwrap();
        let mut count = 0;
        while d.date.year() <= 2035 {
            assert_eq!(d.seconds(), expected_hours(d.date) * 3600, "{}", d.date);
            assert_eq!(local(d.start), Some(d.date.and_time(NaiveTime::MIN)));
            let next = d.next().unwrap();
            assert_eq!(next.start, d.end);
            d = next;
            count += 1;
        }
        assert_eq!(count, 5844);
    }

    #[test]
    fn every_quarter_hour_around_every_change_of_2020_to_2035() {
        for year in 2020..=2035 {
            for month in [3, 10] {
                let c = change(last_sunday(year, month));
                for t in (c - 2 * 86_400..c + 2 * 86_400).step_by(900) {
                    check_instant(t);
                }
                for t in [c - 1, c, c + 1] {
                    check_instant(t);
                }
            }
        }
    }

    /// The year, month and offset from the change of an instant near a change.
    fn near_a_change() -> impl Strategy<Value = i64> {
        (2020..=2035i32, prop::bool::ANY, -3 * 86_400..3 * 86_400i64).prop_map(
            |(year, spring, offset)| {
                change(last_sunday(year, if spring { 3 } else { 10 })) + offset
            },
        )
    }

    proptest! {
        #[test]
        fn any_instant_near_a_change_lies_in_its_day(t in near_a_change()) {
            check_instant(t);
        }

        #[test]
        fn date_midnight_date_round_trips(t in near_a_change()) {
            let date = date_of(t).unwrap();
            let start = midnight(date).unwrap();
            prop_assert_eq!(date_of(start), Some(date));
            prop_assert!(start <= t);
            prop_assert!(midnight(date.succ_opt().unwrap()).unwrap() > t);
        }

        /// A series stamped by the wall clock every `step` (at most an hour, as Enedis' are) is
        /// read back to its instants across both changes.
        #[test]
        fn a_series_of_wall_clock_stamps_reads_back(
            t in near_a_change(),
            step in prop::sample::select(vec![600i64, 1800, 3600]),
        ) {
            let first = t - t.rem_euclid(step);
            // The point before the first one: a series whose first stamp is the repeated hour's
            // second occurrence cannot tell it from the first without it.
            let mut previous = Some(first - step);
            for i in 0..(30 * 3600 / step) {
                let instant = first + i * step;
                prop_assert_eq!(resolve(local(instant).unwrap(), previous), Some(instant));
                previous = Some(instant);
            }
        }

        #[test]
        fn days_within_are_whole_consecutive_and_complete(
            from in near_a_change(),
            length in 0..5 * 86_400i64,
        ) {
            let to = from + length;
            let days = days_within(from, to);
            for pair in days.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
            for d in &days {
                prop_assert!(from <= d.start && d.end <= to);
            }
            // No whole day left out: the one before the first and after the last stick out.
            let first = days.first().map_or(LocalDay::containing(from), |d| Some(*d)).unwrap();
            if days.is_empty() {
                prop_assert!(first.start < from || first.end > to);
            } else {
                let before = LocalDay::of(first.date.pred_opt().unwrap()).unwrap();
                prop_assert!(before.start < from);
                let after = days.last().unwrap().next().unwrap();
                prop_assert!(after.end > to);
            }
        }
    }
}
