//! From a decoded pack to the readings of a device's series (RFC 8428 §4.6 resolution, then our
//! own checks), all or nothing: the first bad record refuses the whole pack, by its index and
//! field, and nothing of it is stored.
//!
//! A record's resolved name (`bn` + `n`) is one of the device's declared series paths, bare or
//! after a `_` (`urn:dev:mac:0024befffe804ff1_production/power/active/instant`, the way our own
//! packs name series). Its value is `v` (or `s` when it has no `v`, a counter's sum); string,
//! boolean and data values are refused. A unit, when given, must be the series' own; a
//! secondary unit (RFC 8798, `Wh`) needs the pack to declare the feature (`bver` 26, RFC 9100).
//! Times below 2^28 are relative to now (RFC 8428 §4.5.3); times are kept to the second.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::Device;
use super::decode::Refusal;
use crate::model::{Batch, Reading};
use crate::stanzas::senml::{is_secondary_unit, Pack, SenmlError, Value};

/// How far ahead of our clock a reading may be: clocks of small devices drift.
pub(crate) const MAX_FUTURE_SECS: i64 = 300;

/// Times below this are relative to now (RFC 8428 §4.5.3).
const RELATIVE_BELOW: f64 = 268_435_456.0;

/// The `bver` of RFC 8428, the default.
const BVER_BASE: i64 = 10;
/// The feature bit of secondary units (RFC 9100 §4).
const FEATURE_SECONDARY_UNITS: i64 = 16;

/// The readings of a pack, per series (in the device's declared order; readings ascending by
/// time, one per time: the last record of a time wins), and how many records it held.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Readings {
    pub(crate) batches: Vec<Batch>,
    pub(crate) records: usize,
}

/// Turns `pack`, posted by `device`, into readings at `now` (unix seconds).
pub(crate) fn readings(
    pack: &Pack,
    device: &Device,
    now: i64,
    retention: Duration,
) -> Result<Readings, Refusal> {
    if pack.records.is_empty() {
        return Err(Refusal::body("the pack holds no record"));
    }
    let bver = bver(pack)?;
    let resolved = pack.resolve().map_err(|e| match e {
        SenmlError::NoName { index } => {
            Refusal::field(index, "n", "no name (neither bn nor n so far)")
        }
        SenmlError::SeveralValues { index } => {
            Refusal::field(index, "v", "more than one value (v, vs, vb, vd)")
        }
        other => Refusal::body(other.to_string()),
    })?;
    let oldest = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let mut series: BTreeMap<usize, BTreeMap<i64, f64>> = BTreeMap::new();
    for (index, r) in resolved.iter().enumerate() {
        let Some(which) = series_of(device, &r.name) else {
            let known: Vec<&str> = device.series.iter().map(|(p, _)| p.as_str()).collect();
            return Err(Refusal::field(
                index,
                "n",
                format!(
                    "name {:?} is none of the series of device {}: {} (bare, or after a '_' as \
                     in urn:dev:…_{})",
                    r.name,
                    device.id,
                    known.join(", "),
                    known.first().copied().unwrap_or("")
                ),
            ));
        };
        let (path, measurement) = &device.series[which];
        let value = match (&r.value, r.sum) {
            (Value::Number(v), _) => *v,
            (Value::None, Some(s)) => s,
            (Value::None, None) => return Err(Refusal::field(index, "v", "no value")),
            (Value::String(_), _) => return Err(not_numeric(index, "vs")),
            (Value::Bool(_), _) => return Err(not_numeric(index, "vb")),
            (Value::Data(_), _) => return Err(not_numeric(index, "vd")),
        };
        if !value.is_finite() {
            return Err(Refusal::field(index, "v", "not a finite number"));
        }
        if let Some(unit) = &r.unit {
            if *unit != measurement.unit {
                return Err(Refusal::field(
                    index,
                    "u",
                    format!("unit {unit:?}: series {path} is in {:?}", measurement.unit),
                ));
            }
            if is_secondary_unit(unit) && bver & FEATURE_SECONDARY_UNITS == 0 {
                return Err(Refusal::field(
                    index,
                    "bver",
                    format!(
                        "{unit:?} is a secondary unit (RFC 8798): the pack must declare \
                         \"bver\": {} (RFC 9100)",
                        BVER_BASE | FEATURE_SECONDARY_UNITS
                    ),
                ));
            }
        }
        let time = time_of(r.time, now).ok_or_else(|| Refusal::field(index, "t", "not a time"))?;
        if time > now.saturating_add(MAX_FUTURE_SECS) {
            return Err(Refusal::field(
                index,
                "t",
                format!(
                    "{} is more than {MAX_FUTURE_SECS} s ahead of our clock ({})",
                    rfc3339(time),
                    rfc3339(now)
                ),
            ));
        }
        if time < oldest {
            return Err(Refusal::field(
                index,
                "t",
                format!(
                    "{} is older than the retention of this source ({}, so not before {})",
                    rfc3339(time),
                    humantime::format_duration(retention),
                    rfc3339(oldest)
                ),
            ));
        }
        // -0.0 and 0.0 are one reading (the store keeps 0.0), so a retry compares equal.
        let value = if value == 0.0 { 0.0 } else { value };
        series.entry(which).or_default().insert(time, value);
    }
    let batches = series
        .into_iter()
        .map(|(which, readings)| Batch {
            usage_point: device.id.clone(),
            series: device.series[which].0.clone(),
            readings: readings
                .into_iter()
                .map(|(time, value)| Reading { time, value })
                .collect(),
        })
        .collect();
    Ok(Readings {
        batches,
        records: pack.records.len(),
    })
}

fn not_numeric(index: usize, field: &str) -> Refusal {
    Refusal::field(
        index,
        field,
        "only numeric values are stored: send the reading as v",
    )
}

/// The pack's version: 10 unless a record says otherwise; every record that says must say the
/// same, and only the features this receiver knows (secondary units) may be asked for.
fn bver(pack: &Pack) -> Result<i64, Refusal> {
    let mut found: Option<i64> = None;
    for (index, r) in pack.records.iter().enumerate() {
        let Some(v) = r.bver else { continue };
        let known = BVER_BASE | FEATURE_SECONDARY_UNITS;
        if v & BVER_BASE != BVER_BASE || v & !known != 0 {
            return Err(Refusal::field(
                index,
                "bver",
                format!(
                    "version {v} is not understood here: {BVER_BASE}, or {} with secondary \
                     units",
                    known
                ),
            ));
        }
        if found.is_some_and(|f| f != v) {
            return Err(Refusal::field(
                index,
                "bver",
                "differs from an earlier record's",
            ));
        }
        found = Some(v);
    }
    Ok(found.unwrap_or(BVER_BASE))
}

/// Which of the device's series a resolved name is: the bare path, or a path after a `_`.
fn series_of(device: &Device, name: &str) -> Option<usize> {
    device.series.iter().position(|(path, _)| {
        name == path
            || name
                .strip_suffix(path.as_str())
                .is_some_and(|prefix| prefix.ends_with('_'))
    })
}

/// Unix seconds of a resolved SenML time: relative to `now` below 2^28, absolute above; the
/// fraction of a second dropped (series hold one reading per second at most).
fn time_of(time: f64, now: i64) -> Option<i64> {
    if !time.is_finite() {
        return None;
    }
    let absolute = if time < RELATIVE_BELOW {
        now as f64 + time
    } else {
        time
    };
    let floored = absolute.floor();
    // Far outside any real time: refused rather than saturated by the cast.
    (floored.abs() < 1e15).then_some(floored as i64)
}

fn rfc3339(time: i64) -> String {
    chrono::DateTime::from_timestamp(time, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::source::http::decode::{decode, Format};
    use crate::source::http::series::measurement;

    const NOW: i64 = 1_764_300_000;
    const DAY: Duration = Duration::from_secs(86_400);

    fn device() -> Device {
        Device {
            id: "pv-roof".into(),
            name: "Roof".into(),
            device_type: "electricity-meter".into(),
            token: Secret::new("0123456789abcdef"),
            series: [
                "production/power/active/instant",
                "production/energy/active/index",
            ]
            .iter()
            .map(|p| (p.to_string(), measurement(p).unwrap()))
            .collect(),
        }
    }

    fn json(text: &str) -> Result<Readings, Refusal> {
        let pack = decode(Format::Json, text.as_bytes()).unwrap();
        readings(&pack, &device(), NOW, 30 * DAY)
    }

    fn refused(text: &str) -> (Option<usize>, Option<String>, String) {
        let e = json(text).unwrap_err();
        (e.record, e.field, e.detail)
    }

    #[test]
    fn base_fields_relative_times_and_series_names() {
        let r = json(&format!(
            r#"[{{"bn":"urn:dev:mac:0024befffe804ff1_","bt":{NOW},"bu":"W","n":"production/power/active/instant","v":1200}},
                {{"n":"production/power/active/instant","t":60,"v":1250.5}},
                {{"bn":"","n":"production/energy/active/index","u":"Wh","bver":26,"t":-10,"v":5000}},
                {{"n":"production/energy/active/index","u":"Wh","s":5001}}]"#
        ))
        .unwrap();
        assert_eq!(r.records, 4);
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[0].series, "production/power/active/instant");
        assert_eq!(
            r.batches[0].readings,
            vec![
                Reading {
                    time: NOW,
                    value: 1200.0
                },
                Reading {
                    time: NOW + 60,
                    value: 1250.5
                }
            ]
        );
        // bt stays in force (absolute, so t is an offset from it); `s` stands for a missing `v`.
        assert_eq!(r.batches[1].readings.len(), 2);
        assert_eq!(
            r.batches[1].readings[0],
            Reading {
                time: NOW - 10,
                value: 5000.0
            }
        );
        assert_eq!(
            r.batches[1].readings[1],
            Reading {
                time: NOW,
                value: 5001.0
            }
        );
    }

    #[test]
    fn the_last_record_of_a_time_wins() {
        let r = json(&format!(
            r#"[{{"n":"production/power/active/instant","t":{NOW},"v":1}},{{"n":"production/power/active/instant","t":{NOW}.4,"v":-0.0}}]"#
        ))
        .unwrap();
        assert_eq!(
            r.batches[0].readings,
            vec![Reading {
                time: NOW,
                value: 0.0
            }]
        );
        assert!(r.batches[0].readings[0].value.is_sign_positive());
    }

    #[test]
    fn every_refusal_names_record_and_field() {
        let p = "production/power/active/instant";
        let e = "production/energy/active/index";
        for (body, record, field, says) in [
            (
                format!(r#"[{{"n":"{p}","v":1}},{{"n":"other","v":2}}]"#),
                1,
                "n",
                "none of the series",
            ),
            (
                format!(r#"[{{"n":"x{p}","v":1}}]"#),
                0,
                "n",
                "none of the series",
            ),
            (
                format!(r#"[{{"n":"{p}","vs":"on"}}]"#),
                0,
                "vs",
                "only numeric",
            ),
            (
                format!(r#"[{{"n":"{p}","vb":true}}]"#),
                0,
                "vb",
                "only numeric",
            ),
            (
                format!(r#"[{{"n":"{p}","vd":"AA"}}]"#),
                0,
                "vd",
                "only numeric",
            ),
            (format!(r#"[{{"n":"{p}"}}]"#), 0, "v", "no value"),
            (
                format!(r#"[{{"n":"{p}","u":"kW","v":1}}]"#),
                0,
                "u",
                "is in \"W\"",
            ),
            (
                format!(r#"[{{"n":"{e}","u":"Wh","v":1}}]"#),
                0,
                "bver",
                "\"bver\": 26",
            ),
            (
                format!(r#"[{{"bver":11,"n":"{p}","v":1}}]"#),
                0,
                "bver",
                "not understood",
            ),
            (
                format!(r#"[{{"bver":10,"n":"{p}","v":1}},{{"bver":26,"n":"{p}","v":1}}]"#),
                1,
                "bver",
                "differs",
            ),
            (
                format!(r#"[{{"n":"{p}","t":{},"v":1}}]"#, NOW + 301),
                0,
                "t",
                "ahead of our clock",
            ),
            (
                format!(r#"[{{"n":"{p}","t":{},"v":1}}]"#, NOW - 31 * 86_400),
                0,
                "t",
                "older than the retention",
            ),
            (
                format!(r#"[{{"n":"{p}","v":1,"t":1e300}}]"#),
                0,
                "t",
                "not a time",
            ),
            (
                format!(r#"[{{"bv":1e308,"n":"{p}","v":1e308}}]"#),
                0,
                "v",
                "finite",
            ),
            (r#"[{"v":1}]"#.to_string(), 0, "n", "no name"),
            (
                format!(r#"[{{"n":"{p}","v":1,"vs":"a"}}]"#),
                0,
                "v",
                "more than one value",
            ),
        ] {
            let (r, f, detail) = refused(&body);
            assert_eq!((r, f.as_deref()), (Some(record), Some(field)), "{body}");
            assert!(detail.contains(says), "{body}: {detail}");
        }
        assert_eq!(refused("[]").0, None);
    }

    #[test]
    fn five_minutes_ahead_and_the_retention_edge_are_accepted() {
        let p = "production/power/active/instant";
        let r = json(&format!(
            r#"[{{"n":"{p}","t":{},"v":1}},{{"n":"{p}","t":{},"v":2}}]"#,
            NOW + MAX_FUTURE_SECS,
            NOW - 30 * 86_400
        ))
        .unwrap();
        assert_eq!(r.batches[0].readings.len(), 2);
    }
}
