//! The demo source: a deterministic fleet of simulated Linky-like meters.
//!
//! Meter ids are PRM-shaped (14 digits) and start with `99999`, a prefix Enedis does not hand out,
//! so demo data can never be mistaken for a real customer's.
//!
//! At start the source declares its meters, then sends their history (the last `history_days`
//! of PT30M load curve and of daily energy), then goes live: an instant power reading every
//! `live_interval`, and each load-curve point and daily value as soon as its interval is over.
//! Every value is a pure function of (meter number, time): a restart sends the same history
//! again, which the store's idempotent upsert absorbs.

use chrono::{Datelike, Timelike};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{SourceEvent, SourceInfo};
use crate::config::{ConfigError, HumanDuration};
use crate::model::{Batch, Identifier, Measurement, Reading, Series, UsagePoint};
use crate::time::duration::format_clock;
use crate::time::paris::{self, LocalDay};

/// Prefix of every demo usage-point id.
pub(crate) const ID_PREFIX: &str = "99999";

/// Largest fleet we accept: enough for load tests, small enough to stay a demo.
pub(crate) const MAX_METERS: u32 = 100_000;

/// Most days of history a demo source may backfill (ten years).
pub(crate) const MAX_HISTORY_DAYS: u32 = 3660;

/// Load curve: mean active power (W) over each half-hour, stamped at the interval start.
pub const LOAD_CURVE: &str = "consumption/power/active/raw";
/// Energy (Wh) of each Europe/Paris day, stamped at the local midnight that starts it.
pub const DAILY: &str = "consumption/energy/active/daily";
/// Instant active power (W), one reading every `live_interval`.
pub const LIVE: &str = "consumption/power/active/instant";

/// Readings per [`SourceEvent::Readings`]: large enough for the store to write efficiently,
/// small enough that the bounded events channel holds little memory.
const BATCH_READINGS: usize = 2_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub id: String,
    /// Number of simulated meters.
    #[serde(default = "default_meters")]
    pub meters: u32,
    /// Number of the first meter; lets two demo sources hold distinct fleets.
    #[serde(default = "default_first_meter")]
    pub first_meter: u32,
    /// Period of the live series (at least 1s: readings are stamped in whole seconds).
    #[serde(default = "default_live_interval")]
    pub live_interval: HumanDuration,
    /// Days of history sent at start (load curve and daily energy), 1 to [`MAX_HISTORY_DAYS`].
    #[serde(default = "default_history_days")]
    pub history_days: u32,
    #[serde(default = "default_title")]
    pub title: String,
    #[serde(default = "default_description")]
    pub description: String,
}

fn default_meters() -> u32 {
    3
}

fn default_first_meter() -> u32 {
    1
}

fn default_live_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

fn default_history_days() -> u32 {
    30
}

fn default_title() -> String {
    "Demo meters".into()
}

fn default_description() -> String {
    "Simulated Linky-like electricity meters".into()
}

impl DemoConfig {
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            kind: "demo".into(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let last = u64::from(self.first_meter) + u64::from(self.meters);
        if self.meters == 0 || self.meters > MAX_METERS || last > 1_000_000_000 {
            return Err(ConfigError::Invalid {
                key: format!("{key}.meters"),
                message: format!("must be between 1 and {MAX_METERS}, ids within 9 digits"),
            });
        }
        if self.live_interval.0 < std::time::Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.live_interval"),
                message: "must be at least 1s (readings are stamped in whole seconds)".into(),
            });
        }
        if !(1..=MAX_HISTORY_DAYS).contains(&self.history_days) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.history_days"),
                message: format!("must be between 1 and {MAX_HISTORY_DAYS}"),
            });
        }
        Ok(())
    }

    /// The 14-digit id of meter `n` (0-based within this fleet).
    pub(crate) fn meter_id(&self, n: u32) -> String {
        format!("{ID_PREFIX}{:09}", self.meter_number(n))
    }

    /// The number that ends meter `n`'s id; its simulated household depends on it alone, so a
    /// meter keeps its profile whichever fleet it is part of.
    fn meter_number(&self, n: u32) -> u64 {
        u64::from(self.first_meter) + u64::from(n)
    }

    /// `(usage-point id, meter number)` of every meter.
    fn meters(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        (0..self.meters).map(|n| (self.meter_id(n), self.meter_number(n)))
    }

    /// The usage points and series this source declares.
    pub fn fleet(&self) -> Vec<(UsagePoint, Vec<Series>)> {
        (0..self.meters)
            .map(|n| {
                let id = self.meter_id(n);
                let up = UsagePoint {
                    id: id.clone(),
                    source: self.id.clone(),
                    device_type: "electricity-meter".into(),
                    identifier: Identifier {
                        authority: "demo".into(),
                        kind: "prm".into(),
                        value: id.clone(),
                    },
                    name: format!("Demo meter {}", n + 1),
                    online: true,
                };
                let series = demo_series(&id, self.live_interval.0);
                (up, series)
            })
            .collect()
    }
}

fn demo_series(usage_point: &str, live_interval: std::time::Duration) -> Vec<Series> {
    let series = |path: &str, title: &str, m: Measurement| Series {
        usage_point: usage_point.to_owned(),
        path: path.to_owned(),
        title: title.to_owned(),
        measurement: m,
    };
    let electrical =
        |name: &str, quantity: &str, unit: &str, aggregation: &str, step: &str| Measurement {
            name: name.into(),
            direction: "consumption".into(),
            quantity: quantity.into(),
            kind: "electrical".into(),
            unit: unit.into(),
            aggregation: aggregation.into(),
            sampling_interval: step.into(),
        };
    vec![
        series(
            LOAD_CURVE,
            "Load curve (mean active power over 30 min)",
            electrical("active-power", "power", "W", "mean", "PT30M"),
        ),
        series(
            DAILY,
            "Daily consumed energy",
            electrical("active-energy", "energy", "Wh", "sum", "P1D"),
        ),
        series(
            LIVE,
            "Live active power",
            electrical(
                "active-power",
                "power",
                "W",
                "instant",
                &format_clock(live_interval),
            ),
        ),
    ]
}

// --- Calendar: half-hours in UTC, days in Europe/Paris (crate::time::paris) ----------------------

/// The load curve's step, in seconds.
const STEP: i64 = 1800;

/// Hours of one load-curve interval: the factor from mean W to Wh.
const STEP_HOURS: f64 = 0.5;

/// `t` rounded down to a multiple of `step` (correct for times before 1970 too).
fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// Starts of the half-hour intervals lying entirely in `[from, to)`, ascending: aligned on :00
/// and :30 UTC (so on local :00 and :30 too, France's offsets being whole hours).
fn half_hours(from: i64, to: i64) -> impl Iterator<Item = i64> {
    let first = align_down(from, STEP) + if from.rem_euclid(STEP) == 0 { 0 } else { STEP };
    (0..)
        .map(move |i| first + i * STEP)
        .take_while(move |start| start + STEP <= to)
}

// --- Profile: what a simulated household draws ---------------------------------------------------

/// splitmix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in `[0, 1)` that depends only on its arguments: the simulation's only randomness.
fn unit(meter: u64, salt: u64, t: i64) -> f64 {
    // Two's complement of t: times before 1970 hash as well as any.
    let h = mix(mix(meter ^ salt.rotate_left(32)) ^ (t as u64));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Salts that make the draws of each purpose independent.
const SALT_HOUSEHOLD: u64 = 1;
const SALT_LOAD_CURVE: u64 = 2;
const SALT_LIVE: u64 = 3;

/// The habits of meter `meter`'s household: fixed for a meter, different between meters.
#[derive(Debug, Clone, Copy)]
struct Household {
    /// Always-on load (fridge, boxes, standby), W.
    base: f64,
    /// Height of the morning, lunch and evening peaks, W.
    morning: f64,
    midday: f64,
    evening: f64,
    /// How much earlier or later than average the household lives, hours.
    shift: f64,
}

impl Household {
    fn of(meter: u64) -> Household {
        let draw =
            |i: i64, low: f64, high: f64| low + (high - low) * unit(meter, SALT_HOUSEHOLD, i);
        Household {
            base: draw(0, 120.0, 400.0),
            morning: draw(1, 300.0, 1200.0),
            midday: draw(2, 150.0, 600.0),
            evening: draw(3, 600.0, 2200.0),
            shift: draw(4, -0.75, 0.75),
        }
    }
}

/// A bell of height 1 centred on hour `centre` (local time), `width` hours wide, wrapping around
/// midnight.
fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    let d = (hour - centre).rem_euclid(24.0);
    let d = d.min(24.0 - d);
    (-0.5 * (d / width).powi(2)).exp()
}

/// Heating and lighting: 1.3 in mid-January, 0.7 in mid-July.
fn season(day_of_year: u32) -> f64 {
    let angle = 2.0 * std::f64::consts::PI * (f64::from(day_of_year) - 15.0) / 365.25;
    1.0 + 0.3 * angle.cos()
}

/// Mean power (W, whole watts, > 0) of meter `meter` over the half-hour starting at `start`.
fn load_curve_w(meter: u64, start: i64) -> f64 {
    let household = Household::of(meter);
    // The middle of the interval, in local time: households live by the wall clock.
    let (hour, weekend, season) = match paris::local(start + STEP / 2) {
        Some(t) => (
            f64::from(t.hour()) + f64::from(t.minute()) / 60.0,
            t.weekday().number_from_monday() >= 6,
            season(t.ordinal()),
        ),
        None => (12.0, false, 1.0),
    };
    let (wake_up, lunch_at_home) = if weekend { (9.0, 1.6) } else { (7.25, 0.6) };
    let power = household.base * season
        + household.morning * bump(hour, wake_up + household.shift, 0.9)
        + household.midday * lunch_at_home * bump(hour, 12.75, 1.0)
        + household.evening * season * bump(hour, 19.5 + household.shift, 1.5);
    let jitter = 0.85 + 0.3 * unit(meter, SALT_LOAD_CURVE, start);
    (power * jitter).round().max(1.0)
}

/// Instant power (W, whole watts, > 0) of meter `meter` at second `t`: its half-hour's mean,
/// give or take 20 %.
fn instant_w(meter: u64, t: i64) -> f64 {
    let jitter = 0.8 + 0.4 * unit(meter, SALT_LIVE, t);
    (load_curve_w(meter, align_down(t, STEP)) * jitter)
        .round()
        .max(1.0)
}

/// Energy (Wh) of meter `meter` over `day`: its load curve's half-hours times half an hour, so
/// the two series agree exactly (values are whole watts, sums of halves are exact in f64).
fn daily_wh(meter: u64, day: LocalDay) -> f64 {
    half_hours(day.start, day.end)
        .map(|start| load_curve_w(meter, start) * STEP_HOURS)
        .sum()
}

fn load_curve_reading(meter: u64, start: i64) -> Reading {
    Reading {
        time: start,
        value: load_curve_w(meter, start),
    }
}

fn daily_reading(meter: u64, day: LocalDay) -> Reading {
    Reading {
        time: day.start,
        value: daily_wh(meter, day),
    }
}

// --- Backfill: the history sent at start ---------------------------------------------------------

/// Readings of one series cut into events of at most [`BATCH_READINGS`].
fn batches(usage_point: &str, series: &str, readings: Vec<Reading>) -> Vec<Batch> {
    readings
        .chunks(BATCH_READINGS)
        .map(|chunk| Batch {
            usage_point: usage_point.to_owned(),
            series: series.to_owned(),
            readings: chunk.to_vec(),
        })
        .collect()
}

/// The history of one meter at `now`: the load curve of every half-hour that ended within the
/// last `history_days` days, then the energy of every local day that did.
fn backfill(usage_point: &str, meter: u64, now: i64, history_days: u32) -> Vec<Batch> {
    let from = now - i64::from(history_days) * 86_400;
    let load_curve = half_hours(from, now)
        .map(|start| load_curve_reading(meter, start))
        .collect();
    let daily = paris::days_within(from, now)
        .into_iter()
        .map(|day| daily_reading(meter, day))
        .collect();
    let mut out = batches(usage_point, LOAD_CURVE, load_curve);
    out.extend(batches(usage_point, DAILY, daily));
    out
}

// --- Live: what becomes due as time passes -------------------------------------------------------

/// The intervals completed since the last look. Starts where the backfill stopped, so every
/// half-hour and day is sent once, by one or the other.
#[derive(Debug)]
struct LiveCursor {
    /// Start of the first half-hour not sent yet.
    next_half_hour: i64,
    /// First local day not sent yet.
    next_day: Option<LocalDay>,
    /// Stamp of the last instant reading: a late tick followed by a punctual one can fall in
    /// the same wall-clock second, and one series never gets two readings at one time.
    last_instant: Option<i64>,
}

/// What became due at one look.
#[derive(Debug, Default, PartialEq)]
struct Due {
    /// The stamp of this look's instant reading, if the clock moved past the last one.
    instant: Option<i64>,
    half_hours: Vec<i64>,
    days: Vec<LocalDay>,
}

impl LiveCursor {
    /// The cursor of a source whose backfill ran at `backfilled_at`.
    fn new(backfilled_at: i64) -> LiveCursor {
        LiveCursor {
            next_half_hour: align_down(backfilled_at, STEP),
            next_day: LocalDay::containing(backfilled_at),
            last_instant: None,
        }
    }

    /// The instant reading of `now` unless one was stamped at or after it, and the half-hours
    /// and days that ended at or before `now` and were not returned before.
    fn due(&mut self, now: i64) -> Due {
        let instant = match self.last_instant {
            Some(last) if now <= last => None,
            _ => {
                self.last_instant = Some(now);
                Some(now)
            }
        };
        let half_hours: Vec<i64> = half_hours(self.next_half_hour, now).collect();
        if let Some(last) = half_hours.last() {
            self.next_half_hour = last + STEP;
        }
        let mut days = Vec::new();
        while let Some(day) = self.next_day.filter(|d| d.end <= now) {
            days.push(day);
            self.next_day = day.next();
        }
        Due {
            instant,
            half_hours,
            days,
        }
    }
}

/// The live events of one meter at one look: its instant power, and the intervals just completed.
fn live(usage_point: &str, meter: u64, due: &Due) -> Vec<Batch> {
    let mut out = Vec::new();
    if let Some(now) = due.instant {
        out.push(Batch {
            usage_point: usage_point.to_owned(),
            series: LIVE.to_owned(),
            readings: vec![Reading {
                time: now,
                value: instant_w(meter, now),
            }],
        });
    }
    if !due.half_hours.is_empty() {
        let readings = due
            .half_hours
            .iter()
            .map(|&start| load_curve_reading(meter, start))
            .collect();
        out.extend(batches(usage_point, LOAD_CURVE, readings));
    }
    if !due.days.is_empty() {
        let readings = due
            .days
            .iter()
            .map(|&day| daily_reading(meter, day))
            .collect();
        out.extend(batches(usage_point, DAILY, readings));
    }
    out
}

// --- The task ------------------------------------------------------------------------------------

pub(crate) async fn run(
    config: DemoConfig,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    run_with_clock(config, events, shutdown, crate::time::now).await;
}

/// Sends `event`, or gives up (false) when shutting down or when the publisher is gone.
async fn send(
    events: &mpsc::Sender<SourceEvent>,
    shutdown: &CancellationToken,
    event: SourceEvent,
) -> bool {
    tokio::select! {
        sent = events.send(event) => sent.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}

/// How long from `now` to the middle of a wall-clock second.
fn until_mid_second(now: std::time::SystemTime) -> std::time::Duration {
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let half = 500_000_000u32;
    let wait = if nanos <= half {
        half - nanos
    } else {
        1_000_000_000 - nanos + half
    };
    std::time::Duration::from_nanos(u64::from(wait))
}

/// [`run`] with the wall clock (unix seconds) as a parameter, for tests.
async fn run_with_clock(
    config: DemoConfig,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
    clock: impl Fn() -> i64,
) {
    for (usage_point, series) in config.fleet() {
        let event = SourceEvent::Declare {
            usage_point,
            series,
        };
        if !send(&events, &shutdown, event).await {
            return;
        }
    }
    tracing::info!(source = %config.id, meters = config.meters, "demo fleet declared");

    let started = clock();
    for (usage_point, meter) in config.meters() {
        for batch in backfill(&usage_point, meter, started, config.history_days) {
            if !send(&events, &shutdown, SourceEvent::Readings(batch)).await {
                return;
            }
        }
    }
    tracing::info!(source = %config.id, days = config.history_days, "demo history sent");

    let mut cursor = LiveCursor::new(started);
    // Readings are stamped in whole seconds: ticks placed half-way between two seconds of the
    // wall clock stay in their own second despite a scheduling delay of up to half a second
    // (ticks near a boundary would land two in one second and skip the next).
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + until_mid_second(std::time::SystemTime::now()),
        config.live_interval.0,
    );
    // After a stall (a slow store), one reading now is better than a burst of stale ones.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The first reading goes out at once (a subscriber arriving right after the start finds a
    // last item); the aligned ticks follow.
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.cancelled() => return,
            }
        }
        first = false;
        let now = clock();
        let due = cursor.due(now);
        for (usage_point, meter) in config.meters() {
            for batch in live(&usage_point, meter, &due) {
                if !send(&events, &shutdown, SourceEvent::Live(batch)).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use chrono::NaiveDate;

    use super::*;

    fn config(meters: u32) -> DemoConfig {
        DemoConfig {
            id: "demo".into(),
            meters,
            first_meter: 1,
            live_interval: HumanDuration(std::time::Duration::from_secs(2)),
            history_days: default_history_days(),
            title: default_title(),
            description: default_description(),
        }
    }

    /// Unix seconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap()
    }

    fn readings_of<'a>(batches: &'a [Batch], series: &str) -> Vec<&'a Reading> {
        batches
            .iter()
            .filter(|b| b.series == series)
            .flat_map(|b| &b.readings)
            .collect()
    }

    #[test]
    fn fleet_ids_are_prm_shaped_and_deterministic() {
        let fleet = config(3).fleet();
        let ids: Vec<_> = fleet.iter().map(|(u, _)| u.id.as_str()).collect();
        assert_eq!(ids, ["99999000000001", "99999000000002", "99999000000003"]);
        assert!(ids.iter().all(|i| i.len() == 14));
        assert_eq!(config(3).fleet(), fleet);
    }

    #[test]
    fn each_meter_declares_the_required_series() {
        for (up, series) in config(2).fleet() {
            let paths: Vec<_> = series.iter().map(|s| s.path.as_str()).collect();
            assert_eq!(paths, [LOAD_CURVE, DAILY, LIVE]);
            assert!(series.iter().all(|s| s.usage_point == up.id));
            let live = series
                .iter()
                .find(|s| s.measurement.aggregation == "instant");
            assert_eq!(live.unwrap().measurement.sampling_interval, "PT2S");
        }
    }

    #[test]
    fn validation_bounds() {
        assert!(config(0).validate("source[0]").is_err());
        assert!(config(3).validate("source[0]").is_ok());

        let mut c = config(3);
        c.live_interval = HumanDuration(std::time::Duration::from_millis(999));
        let err = c.validate("source[0]").unwrap_err().to_string();
        assert!(err.starts_with("source[0].live_interval"), "{err}");
        c.live_interval = HumanDuration(std::time::Duration::from_secs(1));
        assert!(c.validate("source[0]").is_ok());

        for bad in [0, MAX_HISTORY_DAYS + 1] {
            c.history_days = bad;
            let err = c.validate("source[0]").unwrap_err().to_string();
            assert!(err.starts_with("source[0].history_days"), "{err}");
        }
        for good in [1, MAX_HISTORY_DAYS] {
            c.history_days = good;
            assert!(c.validate("source[0]").is_ok());
        }
    }

    #[test]
    fn history_days_defaults_to_30() {
        let c: DemoConfig = toml::from_str("id = \"demo\"").unwrap();
        assert_eq!(c.history_days, 30);
        let c: DemoConfig = toml::from_str("id = \"demo\"\nhistory_days = 7").unwrap();
        assert_eq!(c.history_days, 7);
    }

    #[test]
    fn half_hours_are_aligned_on_00_and_30_and_complete() {
        let starts: Vec<i64> =
            half_hours(utc(2026, 3, 30, 10, 10, 7), utc(2026, 3, 30, 12, 45, 0)).collect();
        assert_eq!(
            starts,
            [
                utc(2026, 3, 30, 10, 30, 0),
                utc(2026, 3, 30, 11, 0, 0),
                utc(2026, 3, 30, 11, 30, 0),
                utc(2026, 3, 30, 12, 0, 0),
            ]
        );
        // Bounds on the grid: an interval starting at `from` or ending at `to` is in.
        let starts: Vec<i64> =
            half_hours(utc(2026, 3, 30, 10, 0, 0), utc(2026, 3, 30, 11, 0, 0)).collect();
        assert_eq!(
            starts,
            [utc(2026, 3, 30, 10, 0, 0), utc(2026, 3, 30, 10, 30, 0)]
        );
        assert_eq!(half_hours(100, 100).count(), 0);
        assert_eq!(align_down(-1, STEP), -STEP);
    }

    #[test]
    fn paris_days_and_their_half_hours() {
        // Spring forward: 23 hours.
        let spring = LocalDay::of(date(2026, 3, 29)).unwrap();
        assert_eq!(spring.start, utc(2026, 3, 28, 23, 0, 0));
        assert_eq!(spring.end, utc(2026, 3, 29, 22, 0, 0));
        assert_eq!(half_hours(spring.start, spring.end).count(), 46);
        // Fall back: 25 hours.
        let autumn = LocalDay::of(date(2026, 10, 25)).unwrap();
        assert_eq!(autumn.start, utc(2026, 10, 24, 22, 0, 0));
        assert_eq!(autumn.end, utc(2026, 10, 25, 23, 0, 0));
        assert_eq!(half_hours(autumn.start, autumn.end).count(), 50);
        // Summer and winter days: 24 hours, starting at 22:00 and 23:00 UTC.
        let summer = LocalDay::of(date(2026, 6, 15)).unwrap();
        assert_eq!(summer.start, utc(2026, 6, 14, 22, 0, 0));
        assert_eq!(half_hours(summer.start, summer.end).count(), 48);
        let winter = LocalDay::of(date(2026, 1, 15)).unwrap();
        assert_eq!(winter.start, utc(2026, 1, 14, 23, 0, 0));
        assert_eq!(half_hours(winter.start, winter.end).count(), 48);

        assert_eq!(LocalDay::containing(spring.start), Some(spring));
        assert_eq!(LocalDay::containing(spring.end - 1), Some(spring));
        assert_eq!(spring.next(), LocalDay::of(date(2026, 3, 30)));
        assert_eq!(
            paris::days_within(utc(2026, 3, 28, 22, 0, 0), utc(2026, 3, 30, 23, 0, 0)),
            [spring, LocalDay::of(date(2026, 3, 30)).unwrap()]
        );
    }

    #[test]
    fn backfill_stamps_interval_starts_and_nothing_in_the_future() {
        // 12:10:07 in Paris, the day after the spring change.
        let now = utc(2026, 3, 30, 10, 10, 7);
        let batches = backfill("99999000000001", 1, now, 3);
        assert!(batches.iter().all(|b| b.usage_point == "99999000000001"));

        let load_curve = readings_of(&batches, LOAD_CURVE);
        let times: Vec<i64> = load_curve.iter().map(|r| r.time).collect();
        assert_eq!(times.first(), Some(&utc(2026, 3, 27, 10, 30, 0)));
        // The half-hour 10:00–10:30 UTC is not over: the last point is the one before.
        assert_eq!(times.last(), Some(&utc(2026, 3, 30, 9, 30, 0)));
        assert!(times.windows(2).all(|w| w[1] - w[0] == STEP));
        assert_eq!(times.len(), 3 * 48 - 1);

        // Complete local days only: 27 March began before the window, 30 March is not over.
        let daily = readings_of(&batches, DAILY);
        let days: Vec<i64> = daily.iter().map(|r| r.time).collect();
        assert_eq!(
            days,
            [utc(2026, 3, 27, 23, 0, 0), utc(2026, 3, 28, 23, 0, 0)]
        );

        for r in load_curve.iter().chain(&daily) {
            assert!(r.time < now && r.value > 0.0, "{r:?}");
        }
        assert!(times.last().unwrap() + STEP <= now);
    }

    #[test]
    fn backfill_at_a_boundary_includes_what_just_ended() {
        // Local midnight starting 31 March.
        let now = utc(2026, 3, 30, 22, 0, 0);
        let batches = backfill("m", 1, now, 1);
        let load_curve = readings_of(&batches, LOAD_CURVE);
        assert_eq!(load_curve.len(), 48);
        assert_eq!(load_curve.last().unwrap().time, now - STEP);
        let daily = readings_of(&batches, DAILY);
        assert_eq!(daily.len(), 1);
        assert_eq!(daily[0].time, utc(2026, 3, 29, 22, 0, 0));
    }

    #[test]
    fn daily_energy_is_the_load_curve_times_half_an_hour() {
        let now = utc(2026, 10, 27, 6, 0, 0);
        let batches = backfill("m", 42, now, 5);
        let load_curve = readings_of(&batches, LOAD_CURVE);
        let daily = readings_of(&batches, DAILY);
        // 23 to 26 October, the 25th being 25 hours long.
        assert_eq!(daily.len(), 4);
        for (i, day) in daily.iter().enumerate() {
            let end = daily
                .get(i + 1)
                .map_or(utc(2026, 10, 26, 23, 0, 0), |next| next.time);
            let half_hours: Vec<f64> = load_curve
                .iter()
                .filter(|r| day.time <= r.time && r.time < end)
                .map(|r| r.value)
                .collect();
            let expected = if day.time == utc(2026, 10, 24, 22, 0, 0) {
                50
            } else {
                48
            };
            assert_eq!(half_hours.len(), expected, "day at {}", day.time);
            assert_eq!(day.value, half_hours.iter().sum::<f64>() * 0.5);
        }
    }

    #[test]
    fn profile_is_deterministic_positive_plausible_and_per_meter() {
        let day = LocalDay::of(date(2026, 1, 15)).unwrap();
        let curve = |meter| -> Vec<f64> {
            half_hours(day.start, day.end)
                .map(|t| load_curve_w(meter, t))
                .collect()
        };
        assert_eq!(curve(1), curve(1));
        assert_ne!(curve(1), curve(2));
        assert_eq!(backfill("m", 7, day.end, 2), backfill("m", 7, day.end, 2));

        for meter in [1, 2, 3, 999_999_999] {
            let year = LocalDay::of(date(2026, 1, 1)).unwrap().start;
            let mut winter_evening = 0.0;
            let mut winter_night = 0.0;
            for start in half_hours(year, year + 365 * 86_400) {
                let w = load_curve_w(meter, start);
                assert!(
                    (1.0..10_000.0).contains(&w) && w.fract() == 0.0,
                    "{meter} {start} {w}"
                );
                let local = paris::local(start).unwrap();
                if local.month() == 1 && local.hour() == 19 {
                    winter_evening += w;
                }
                if local.month() == 1 && local.hour() == 3 {
                    winter_night += w;
                }
            }
            assert!(winter_evening > 2.0 * winter_night, "meter {meter}");
            // A household uses a few kWh to a few tens of kWh a day.
            let wh = daily_wh(meter, day);
            assert!((2_000.0..60_000.0).contains(&wh), "meter {meter}: {wh} Wh");
        }
    }

    #[test]
    fn instant_power_follows_the_load_curve() {
        let t0 = utc(2026, 3, 30, 18, 0, 0);
        for t in (t0..t0 + STEP).step_by(97) {
            let mean = load_curve_w(5, t0);
            let w = instant_w(5, t);
            assert_eq!(w, instant_w(5, t));
            assert!(w >= 1.0 && w >= (mean * 0.8).floor() && w <= (mean * 1.2).ceil());
        }
    }

    #[test]
    fn live_cursor_sends_each_interval_once_after_the_backfill() {
        // 23:50 local on 28 March, before the spring change.
        let started = utc(2026, 3, 28, 22, 50, 0);
        let mut cursor = LiveCursor::new(started);
        let due = cursor.due(started + 300);
        assert_eq!(due.instant, Some(started + 300));
        assert!(due.half_hours.is_empty() && due.days.is_empty());

        let midnight = utc(2026, 3, 28, 23, 0, 0);
        let due = cursor.due(midnight);
        assert_eq!(due.half_hours, [utc(2026, 3, 28, 22, 30, 0)]);
        assert_eq!(due.days, [LocalDay::of(date(2026, 3, 28)).unwrap()]);
        let due = cursor.due(midnight + 60);
        assert!(due.half_hours.is_empty() && due.days.is_empty());

        // A long stall: everything in between comes at once, in order.
        let later = utc(2026, 3, 30, 22, 50, 0);
        let due = cursor.due(later);
        assert_eq!(due.half_hours.first(), Some(&midnight));
        assert_eq!(due.half_hours.last(), Some(&(utc(2026, 3, 30, 22, 0, 0))));
        assert!(due.half_hours.windows(2).all(|w| w[1] - w[0] == STEP));
        assert_eq!(
            due.days,
            [
                LocalDay::of(date(2026, 3, 29)).unwrap(),
                LocalDay::of(date(2026, 3, 30)).unwrap()
            ]
        );

        // Backfill and live together: every half-hour once, no gap.
        let backfilled = backfill("m", 1, started, 1);
        let mut all: Vec<i64> = readings_of(&backfilled, LOAD_CURVE)
            .iter()
            .map(|r| r.time)
            .collect();
        let mut cursor = LiveCursor::new(started);
        for now in (started..later).step_by(977) {
            all.extend(cursor.due(now).half_hours);
        }
        assert!(all.windows(2).all(|w| w[1] - w[0] == STEP));
    }

    #[test]
    fn live_events_of_a_meter() {
        let now = utc(2026, 3, 28, 23, 0, 3);
        let due = Due {
            instant: Some(now),
            half_hours: vec![utc(2026, 3, 28, 22, 30, 0)],
            days: vec![LocalDay::of(date(2026, 3, 28)).unwrap()],
        };
        let batches = live("m", 3, &due);
        let series: Vec<&str> = batches.iter().map(|b| b.series.as_str()).collect();
        assert_eq!(series, [LIVE, LOAD_CURVE, DAILY]);
        assert_eq!(
            batches[0].readings,
            [Reading {
                time: now,
                value: instant_w(3, now)
            }]
        );
        assert_eq!(batches[1].readings[0].time, due.half_hours[0]);
        assert_eq!(batches[2].readings[0].time, due.days[0].start);
        assert!(live("m", 3, &Due::default()).is_empty());
    }

    #[test]
    fn ticks_are_placed_half_way_through_a_second() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(until_mid_second(at(1_000)), Duration::from_millis(500));
        assert_eq!(until_mid_second(at(1_200)), Duration::from_millis(300));
        assert_eq!(until_mid_second(at(1_500)), Duration::ZERO);
        assert_eq!(until_mid_second(at(1_900)), Duration::from_millis(600));
    }

    #[test]
    fn a_late_tick_does_not_stamp_two_readings_in_one_second() {
        let started = utc(2026, 3, 28, 10, 0, 0);
        let mut cursor = LiveCursor::new(started);
        // A tick delayed into the next second, then a punctual one: both read the same clock.
        assert_eq!(cursor.due(started + 1).instant, Some(started + 1));
        assert_eq!(cursor.due(started + 1).instant, None);
        // A clock stepped backwards waits until it passes the last stamp again.
        assert_eq!(cursor.due(started).instant, None);
        assert_eq!(cursor.due(started + 2).instant, Some(started + 2));
    }

    /// Everything the source sends, in order, until `count` readings events arrived.
    async fn receive_readings(rx: &mut mpsc::Receiver<SourceEvent>, count: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        while out.len() < count {
            match rx.recv().await {
                Some(SourceEvent::Readings(batch)) | Some(SourceEvent::Live(batch)) => {
                    out.push(batch)
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("the source stopped"),
            }
        }
        out
    }

    #[tokio::test]
    async fn run_declares_backfills_then_goes_live() {
        let clock = Arc::new(AtomicI64::new(utc(2026, 3, 30, 10, 10, 7)));
        let mut c = config(2);
        c.history_days = 2;
        c.live_interval = HumanDuration(std::time::Duration::from_secs(1));
        let (tx, mut rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let now = {
            let clock = clock.clone();
            move || clock.load(Ordering::SeqCst)
        };
        let task = tokio::spawn(run_with_clock(c, tx, shutdown.clone(), now));

        for _ in 0..2 {
            assert!(matches!(rx.recv().await, Some(SourceEvent::Declare { .. })));
        }
        // Per meter: the load curve, then one complete day (29 March).
        let history = receive_readings(&mut rx, 4).await;
        let series: Vec<(&str, &str, usize)> = history
            .iter()
            .map(|b| (b.usage_point.as_str(), b.series.as_str(), b.readings.len()))
            .collect();
        assert_eq!(
            series,
            [
                ("99999000000001", LOAD_CURVE, 2 * 48 - 1),
                ("99999000000001", DAILY, 1),
                ("99999000000002", LOAD_CURVE, 2 * 48 - 1),
                ("99999000000002", DAILY, 1),
            ]
        );

        // The first tick is immediate: instant power only.
        let started = clock.load(Ordering::SeqCst);
        let first = receive_readings(&mut rx, 2).await;
        assert!(first.iter().all(|b| b.series == LIVE));
        assert!(first.iter().all(|b| b.readings
            == [Reading {
                time: started,
                value: instant_w(if b.usage_point.ends_with('1') { 1 } else { 2 }, started),
            }]));

        // An hour later (for the source's clock), two half-hours have ended.
        clock.store(started + 3600, Ordering::SeqCst);
        let second = receive_readings(&mut rx, 4).await;
        let series: Vec<&str> = second.iter().map(|b| b.series.as_str()).collect();
        assert_eq!(series, [LIVE, LOAD_CURVE, LIVE, LOAD_CURVE]);
        assert_eq!(second[0].readings[0].time, started + 3600);
        let times: Vec<i64> = second[1].readings.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            [utc(2026, 3, 30, 10, 0, 0), utc(2026, 3, 30, 10, 30, 0)]
        );

        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn run_stops_on_shutdown_while_the_channel_is_full() {
        let (tx, mut rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config(3), tx, shutdown.clone()));
        assert!(matches!(rx.recv().await, Some(SourceEvent::Declare { .. })));
        shutdown.cancel();
        task.await.unwrap();
    }
}
