//! Enedis Data Connect 2026: serde models of the measure responses, and their conversion to
//! [`Reading`]s.
//!
//! Rules (docs/architecture.md §5.2):
//! - values `v` are strings; `"null"`, an empty string, JSON `null` or a missing `v` is a gap,
//!   never a zero, and a missing point is a gap too (nothing is invented);
//! - `d` is a naive Europe/Paris local time. A load-curve point's `d` is the **end** of its
//!   interval: it is resolved to UTC first, then moved back by the point's own step `p` (falling
//!   back to the response's `pas`), so the reading is stamped at the interval start;
//! - the repeated autumn hour is resolved by order: an ambiguous local time takes its first
//!   occurrence unless that is not after the previous point, then its second one;
//! - a local time inside the spring gap (which Enedis should not send) is read with the offset in
//!   force just before the gap (both rules are [`crate::time::paris::resolve`]'s, for every caller);
//! - daily values (energy, max power) are stamped at the local midnight starting their day; the max
//!   power's time of day (when the maximum was reached) is dropped;
//! - energies are in Wh, powers in W or VA (`kWh`, `kW` and `kVA` are scaled).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::Deserialize;

use crate::model::{Batch, Reading};
use crate::time::{duration, paris};

/// Why a response could not be turned into readings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("malformed Enedis response: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown grandeurMetier {0:?} (expected CONS or PROD)")]
    Direction(String),
    #[error("unexpected unit {unit:?} for {kind} (expected {expected})")]
    Unit {
        unit: String,
        kind: &'static str,
        expected: &'static str,
    },
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
    #[error("bad step {0:?}")]
    Step(String),
    #[error("load-curve point {0:?} has no step (neither `p` nor `pas`)")]
    NoStep(String),
    #[error("bad value {value:?} at {at:?}")]
    Value { value: String, at: String },
}

// --- Measure responses (`/mesure_synchrone_auto/v2/…`) ---------------------------------------

/// A measure response: load curve (`courbe_de_charge_*`), daily energy (`*_quotidienne`) or
/// daily max power (`puissance_conso_max_quotidienne`). They share one shape; only daily ones
/// carry `pas`, only load-curve points carry `p`, `n`, `iv`, `ec`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MeasureResponse {
    pub(crate) id_prm: String,
    /// `BRUT` (raw) or `BEST` (corrected).
    pub(crate) etape_metier: Option<String>,
    pub(crate) periode: Option<Periode>,
    /// `GLOBALE` on daily energy.
    pub(crate) type_valeur: Option<String>,
    /// `MESURE`, `DIFF.INDEX`, `INTEG.COURBE`.
    pub(crate) mode_calcul: Option<String>,
    /// Global step of daily responses (`P1D`, `P1M`).
    pub(crate) pas: Option<String>,
    #[serde(default)]
    pub(crate) grandeur: Vec<Grandeur>,
}

/// The requested period, `dateDebut` included, `dateFin` excluded (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Periode {
    pub(crate) date_debut: Option<String>,
    pub(crate) date_fin: Option<String>,
}

/// One measured quantity of a response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Grandeur {
    /// `CONS` or `PROD`.
    pub(crate) grandeur_metier: String,
    /// `PA` (load curve), `EA` (energy), `PMA` (max power), …
    pub(crate) grandeur_physique: String,
    /// `W`, `Wh`, `VA`.
    pub(crate) unite: String,
    #[serde(default)]
    pub(crate) points: Vec<Point>,
}

/// One point: `v` (value, a string), `d` (naive Europe/Paris local time or date), and on load
/// curves `p` (step), `n` (nature), `iv` (Linky plausibility index), `ec` (extra state).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Point {
    #[serde(default)]
    pub(crate) v: Option<Scalar>,
    pub(crate) d: String,
    #[serde(default)]
    pub(crate) p: Option<String>,
    #[serde(default)]
    pub(crate) n: Option<Scalar>,
    #[serde(default)]
    pub(crate) iv: Option<Scalar>,
    #[serde(default)]
    pub(crate) ec: Option<Scalar>,
}

/// A field documented as a string that we also accept as a JSON number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Number(f64),
}

impl Point {
    /// The value, `None` for a gap (`"null"`, `""`, JSON `null`, no `v`).
    pub(crate) fn value(&self) -> Result<Option<f64>, ParseError> {
        let bad = |value: String| ParseError::Value {
            value,
            at: self.d.clone(),
        };
        match &self.v {
            None => Ok(None),
            Some(Scalar::Number(x)) if x.is_finite() => Ok(Some(*x)),
            Some(Scalar::Number(x)) => Err(bad(x.to_string())),
            Some(Scalar::Text(text)) => {
                let t = text.trim();
                if t.is_empty() || t.eq_ignore_ascii_case("null") {
                    return Ok(None);
                }
                match t.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(Some(x)),
                    _ => Err(bad(text.clone())),
                }
            }
        }
    }
}

/// Which measure a response holds; decides the series path, the unit and the time rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `courbe_de_charge_consommation` / `courbe_de_charge_production`: mean W per interval.
    LoadCurve,
    /// `consommation_quotidienne` / `production_quotidienne`: Wh per local day.
    DailyEnergy,
    /// `puissance_conso_max_quotidienne`: VA, max of each local day.
    DailyMaxPower,
}

impl Kind {
    /// The unit readings are produced in.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Kind::LoadCurve => "W",
            Kind::DailyEnergy => "Wh",
            Kind::DailyMaxPower => "VA",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::LoadCurve => "a load curve",
            Kind::DailyEnergy => "a daily energy",
            Kind::DailyMaxPower => "a daily max power",
        }
    }

    /// The generation-2 series path for `direction`.
    pub(crate) fn path(self, direction: Direction) -> String {
        let d = direction.as_str();
        match self {
            Kind::LoadCurve => format!("{d}/power/active/raw"),
            Kind::DailyEnergy => format!("{d}/energy/active/daily"),
            Kind::DailyMaxPower => format!("{d}/power/apparent/max"),
        }
    }

    /// Factor from `unite` to [`Kind::unit`].
    fn scale(self, unite: &str) -> Result<f64, ParseError> {
        let base = self.unit();
        let unite = unite.trim();
        if unite == base {
            Ok(1.0)
        } else if unite.strip_prefix('k') == Some(base) {
            Ok(1000.0)
        } else {
            Err(ParseError::Unit {
                unit: unite.to_owned(),
                kind: self.name(),
                expected: base,
            })
        }
    }
}

/// Direction of a `grandeur`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Consumption,
    Production,
}

impl Direction {
    /// From `grandeurMetier`.
    pub(crate) fn from_grandeur_metier(text: &str) -> Result<Self, ParseError> {
        match text.trim() {
            "CONS" => Ok(Direction::Consumption),
            "PROD" => Ok(Direction::Production),
            other => Err(ParseError::Direction(other.to_owned())),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Consumption => "consumption",
            Direction::Production => "production",
        }
    }
}

/// Readings of one series converted from one `grandeur`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesReadings {
    /// Series path, e.g. `consumption/power/active/raw`.
    pub(crate) path: String,
    /// The step shared by every point (`PT30M`, `P1D`); `None` when the steps differ or there
    /// are no points.
    pub(crate) sampling_interval: Option<String>,
    /// In the points' order, stamped at interval start (unix seconds, UTC).
    pub(crate) readings: Vec<Reading>,
    /// Points that were gaps (`"null"` values).
    pub(crate) gaps: usize,
}

impl SeriesReadings {
    pub(crate) fn into_batch(self, usage_point: &str) -> Batch {
        Batch {
            usage_point: usage_point.to_owned(),
            series: self.path,
            readings: self.readings,
        }
    }
}

/// Parses a measure response body and converts it.
pub(crate) fn parse_measure(kind: Kind, body: &str) -> Result<Vec<SeriesReadings>, ParseError> {
    let response: MeasureResponse = serde_json::from_str(body)?;
    convert(kind, &response)
}

/// Converts every `grandeur` of `response` (normally one) to the readings of its series.
pub(crate) fn convert(
    kind: Kind,
    response: &MeasureResponse,
) -> Result<Vec<SeriesReadings>, ParseError> {
    response
        .grandeur
        .iter()
        .map(|g| convert_grandeur(kind, response.pas.as_deref(), g))
        .collect()
}

fn convert_grandeur(
    kind: Kind,
    pas: Option<&str>,
    grandeur: &Grandeur,
) -> Result<SeriesReadings, ParseError> {
    let direction = Direction::from_grandeur_metier(&grandeur.grandeur_metier)?;
    let scale = kind.scale(&grandeur.unite)?;
    let mut readings = Vec::with_capacity(grandeur.points.len());
    let mut gaps = 0;
    let mut steps: Option<Option<&str>> = None;
    let mut previous_end: Option<i64> = None;
    for point in &grandeur.points {
        let (time, step) = match kind {
            Kind::LoadCurve => {
                let step = point
                    .p
                    .as_deref()
                    .or(pas)
                    .ok_or_else(|| ParseError::NoStep(point.d.clone()))?;
                let seconds = parse_step(step)?;
                let end = paris::resolve(parse_local_datetime(&point.d)?, previous_end)
                    .ok_or_else(|| ParseError::Timestamp(point.d.clone()))?;
                previous_end = Some(end);
                (end - seconds, step)
            }
            Kind::DailyEnergy | Kind::DailyMaxPower => {
                let day = parse_local_day(&point.d)?;
                let start =
                    paris::midnight(day).ok_or_else(|| ParseError::Timestamp(point.d.clone()))?;
                (start, pas.unwrap_or("P1D"))
            }
        };
        steps = match steps {
            None => Some(Some(step)),
            Some(Some(s)) if s == step => Some(Some(s)),
            Some(_) => Some(None),
        };
        match point.value()? {
            Some(value) => readings.push(Reading {
                time,
                value: value * scale,
            }),
            None => gaps += 1,
        }
    }
    Ok(SeriesReadings {
        path: kind.path(direction),
        sampling_interval: steps.flatten().map(str::to_owned),
        readings,
        gaps,
    })
}

// --- Time ------------------------------------------------------------------------------------

/// `YYYY-MM-DD HH:MM:SS` (also with `T`, without seconds, or `24:00:00` for the next midnight).
pub(crate) fn parse_local_datetime(text: &str) -> Result<NaiveDateTime, ParseError> {
    let bad = || ParseError::Timestamp(text.to_owned());
    let t = text.trim();
    let (date, time) = t.split_once([' ', 'T']).ok_or_else(bad)?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?;
    let time = time.trim();
    if matches!(time, "24:00" | "24:00:00") {
        return date
            .succ_opt()
            .map(|next| next.and_time(NaiveTime::MIN))
            .ok_or_else(bad);
    }
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M"))
        .map_err(|_| bad())?;
    Ok(date.and_time(time))
}

/// The local day of a daily point: `YYYY-MM-DD`, or a date and time (max power).
pub(crate) fn parse_local_day(text: &str) -> Result<NaiveDate, ParseError> {
    let t = text.trim();
    if t.len() > 10 {
        return parse_local_datetime(t).map(|dt| dt.date());
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| ParseError::Timestamp(text.to_owned()))
}

/// Seconds of an ISO 8601 step made of whole hours, minutes, seconds (`PT30M`, `PT1H`, `PT10M`).
pub(crate) fn parse_step(text: &str) -> Result<i64, ParseError> {
    duration::clock_seconds(text).ok_or_else(|| ParseError::Step(text.to_owned()))
}

#[cfg(test)]
mod tests {
    //! On the fixtures of tests/fixtures/enedis/ (written by its make_fixtures.py, whose docstring
    //! explains every figure below) and on bodies made up here.

    use super::*;
    use chrono::DateTime;

    const LOAD_CONS: &str = fixture!("mesure_courbe_de_charge_consommation.json");
    const LOAD_PROD: &str = fixture!("mesure_courbe_de_charge_production.json");
    const DAILY_CONS: &str = fixture!("mesure_consommation_quotidienne.json");
    const DAILY_PROD: &str = fixture!("mesure_production_quotidienne.json");
    const MAX_POWER: &str = fixture!("mesure_puissance_conso_max_quotidienne.json");
    const AUTUMN: &str = fixture!("courbe_de_charge_automne.json");
    const SPRING: &str = fixture!("courbe_de_charge_printemps_lacunes.json");
    const PT10M: &str = fixture!("courbe_de_charge_pt10m.json");
    const PT60M: &str = fixture!("courbe_de_charge_pt60m.json");

    /// Unix seconds of an RFC 3339 instant.
    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    fn one(kind: Kind, body: &str) -> SeriesReadings {
        let mut all = parse_measure(kind, body).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn labels(body: &str) -> Vec<String> {
        let r: MeasureResponse = serde_json::from_str(body).unwrap();
        r.grandeur[0].points.iter().map(|p| p.d.clone()).collect()
    }

    /// A load-curve response of `points` (`v`, `d`, `p`).
    fn load_curve(points: &[(&str, String, &str)]) -> String {
        let points: Vec<_> = points
            .iter()
            .map(|(v, d, p)| serde_json::json!({"v": v, "d": d, "p": p, "n": "B", "iv": "0", "ec": "0"}))
            .collect();
        serde_json::json!({
            "idPrm": "09876543210987", "etapeMetier": "BRUT", "modeCalcul": "MESURE",
            "periode": {"dateDebut": "x", "dateFin": "y"},
            "grandeur": [{"grandeurMetier": "CONS", "grandeurPhysique": "PA", "unite": "W",
                          "points": points, "calendrier": []}],
            "contexte": []
        })
        .to_string()
    }

    #[test]
    fn consumption_load_curve_fixture() {
        let s = one(Kind::LoadCurve, LOAD_CONS);
        assert_eq!(s.path, "consumption/power/active/raw");
        assert_eq!(s.sampling_interval.as_deref(), Some("PT30M"));
        assert_eq!(s.gaps, 0);
        assert_eq!(s.readings.len(), 96);
        // "2026-09-29 00:30:00" (end, CEST) -> interval start 2026-09-29T00:00+02:00.
        assert_eq!(
            s.readings[0],
            Reading {
                time: at("2026-09-28T22:00:00Z"),
                value: 2080.0
            }
        );
        assert_eq!(
            s.readings[1],
            Reading {
                time: at("2026-09-28T22:30:00Z"),
                value: 2117.0
            }
        );
        // "2026-10-01 00:00:00" -> 2026-09-30T23:30+02:00.
        assert_eq!(
            s.readings[95],
            Reading {
                time: at("2026-09-30T21:30:00Z"),
                value: 359.0
            }
        );
        for w in s.readings.windows(2) {
            assert_eq!(w[1].time - w[0].time, 1800);
        }
    }

    #[test]
    fn production_load_curve_fixture() {
        let s = one(Kind::LoadCurve, LOAD_PROD);
        assert_eq!(s.path, "production/power/active/raw");
        assert_eq!(s.readings.len(), 96);
        assert_eq!(s.readings[0].time, at("2026-09-28T22:00:00Z"));
        assert_eq!(s.readings[95].time, at("2026-09-30T21:30:00Z"));
        assert!(s.readings.iter().all(|r| r.value >= 0.0));
        // Half-hour means in W, summed over a day and halved: the daily file's Wh.
        let first_day: f64 = s.readings[..48].iter().map(|r| r.value).sum();
        assert_eq!((first_day / 2.0).floor(), 23483.0);
    }

    #[test]
    fn daily_fixtures() {
        let s = one(Kind::DailyEnergy, DAILY_CONS);
        assert_eq!(s.path, "consumption/energy/active/daily");
        assert_eq!(s.sampling_interval.as_deref(), Some("P1D"));
        assert_eq!(
            s.readings,
            vec![
                Reading {
                    time: at("2026-09-28T22:00:00Z"),
                    value: 20938.0
                },
                Reading {
                    time: at("2026-09-29T22:00:00Z"),
                    value: 21898.0
                },
            ]
        );
        let s = one(Kind::DailyEnergy, DAILY_PROD);
        assert_eq!(s.path, "production/energy/active/daily");
        assert_eq!(
            s.readings,
            vec![
                Reading {
                    time: at("2026-09-28T22:00:00Z"),
                    value: 23483.0
                },
                Reading {
                    time: at("2026-09-29T22:00:00Z"),
                    value: 7041.0
                },
            ]
        );
        let s = one(Kind::DailyMaxPower, MAX_POWER);
        assert_eq!(s.path, "consumption/power/apparent/max");
        // "2026-09-29 20:12:34": stamped at the start of its day.
        assert_eq!(labels(MAX_POWER)[0], "2026-09-29 20:12:34");
        assert_eq!(
            s.readings,
            vec![
                Reading {
                    time: at("2026-09-28T22:00:00Z"),
                    value: 2950.0
                },
                Reading {
                    time: at("2026-09-29T22:00:00Z"),
                    value: 3000.0
                },
            ]
        );
    }

    #[test]
    fn fixture_models_keep_the_metadata() {
        let r: MeasureResponse = serde_json::from_str(DAILY_CONS).unwrap();
        assert_eq!(r.id_prm, "09876543210987");
        assert_eq!(r.etape_metier.as_deref(), Some("BRUT"));
        assert_eq!(r.type_valeur.as_deref(), Some("GLOBALE"));
        assert_eq!(r.mode_calcul.as_deref(), Some("DIFF.INDEX"));
        assert_eq!(r.pas.as_deref(), Some("P1D"));
        let p = r.periode.unwrap();
        assert_eq!(
            (p.date_debut.as_deref(), p.date_fin.as_deref()),
            (Some("2026-09-29"), Some("2026-10-01"))
        );
        let r: MeasureResponse = serde_json::from_str(LOAD_CONS).unwrap();
        assert_eq!(r.pas, None);
        assert_eq!(r.grandeur[0].grandeur_physique, "PA");
        let point = &r.grandeur[0].points[0];
        assert_eq!(point.v, Some(Scalar::Text("2080".into())));
        assert_eq!(point.p.as_deref(), Some("PT30M"));
        assert_eq!(point.n, Some(Scalar::Text("B".into())));
        assert_eq!(point.iv, Some(Scalar::Text("0".into())));
        assert_eq!(point.ec, Some(Scalar::Text("0".into())));
    }

    #[test]
    fn null_and_missing_values_are_gaps() {
        let body = serde_json::json!({
            "idPrm": "1",
            "grandeur": [{"grandeurMetier": "CONS", "grandeurPhysique": "PA", "unite": "W", "points": [
                {"v": "100", "d": "2026-09-29 00:30:00", "p": "PT30M"},
                {"v": "null", "d": "2026-09-29 01:00:00", "p": "PT30M"},
                {"v": null, "d": "2026-09-29 01:30:00", "p": "PT30M"},
                {"d": "2026-09-29 02:00:00", "p": "PT30M"},
                {"v": "", "d": "2026-09-29 02:30:00", "p": "PT30M"},
                {"v": "0", "d": "2026-09-29 03:00:00", "p": "PT30M"},
                {"v": 7, "d": "2026-09-29 03:30:00", "p": "PT30M"}
            ]}]
        })
        .to_string();
        let s = one(Kind::LoadCurve, &body);
        assert_eq!(s.gaps, 4);
        assert_eq!(
            s.readings,
            vec![
                Reading {
                    time: at("2026-09-28T22:00:00Z"),
                    value: 100.0
                },
                Reading {
                    time: at("2026-09-29T00:30:00Z"),
                    value: 0.0
                },
                Reading {
                    time: at("2026-09-29T01:00:00Z"),
                    value: 7.0
                },
            ]
        );
        // A missing day is simply absent, and "null" daily values are gaps too.
        let body = DAILY_CONS.replace("\"20938\"", "\"null\"");
        let s = one(Kind::DailyEnergy, &body);
        assert_eq!(s.gaps, 1);
        assert_eq!(
            s.readings,
            vec![Reading {
                time: at("2026-09-29T22:00:00Z"),
                value: 21898.0
            }]
        );
    }

    #[test]
    fn garbage_values_are_errors() {
        let body = DAILY_CONS.replace("\"20938\"", "\"12abc\"");
        assert!(matches!(
            parse_measure(Kind::DailyEnergy, &body),
            Err(ParseError::Value { .. })
        ));
        assert!(matches!(
            parse_measure(Kind::DailyEnergy, "<html>"),
            Err(ParseError::Json(_))
        ));
        let body = DAILY_CONS.replace("\"Wh\"", "\"W\"");
        assert!(matches!(
            parse_measure(Kind::DailyEnergy, &body),
            Err(ParseError::Unit { .. })
        ));
        let body = DAILY_CONS.replace("\"CONS\"", "\"XYZ\"");
        assert!(matches!(
            parse_measure(Kind::DailyEnergy, &body),
            Err(ParseError::Direction(_))
        ));
        let body = LOAD_CONS.replacen("\"2026-09-29 00:30:00\"", "\"29/09/2026 00:30\"", 1);
        assert!(matches!(
            parse_measure(Kind::LoadCurve, &body),
            Err(ParseError::Timestamp(_))
        ));
    }

    #[test]
    fn kilo_units_are_scaled() {
        let body = DAILY_CONS.replace("\"Wh\"", "\"kWh\"");
        assert_eq!(
            one(Kind::DailyEnergy, &body).readings[0].value,
            20_938_000.0
        );
    }

    #[test]
    fn each_point_uses_its_own_step() {
        let body = load_curve(&[
            ("1", "2026-09-29 00:30:00".into(), "PT30M"),
            ("2", "2026-09-29 00:40:00".into(), "PT10M"),
            ("3", "2026-09-29 01:40:00".into(), "PT1H"),
        ]);
        let s = one(Kind::LoadCurve, &body);
        let times: Vec<_> = s.readings.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            vec![
                at("2026-09-28T22:00:00Z"),
                at("2026-09-28T22:30:00Z"),
                at("2026-09-28T22:40:00Z")
            ]
        );
        assert_eq!(s.sampling_interval, None);
    }

    #[test]
    fn ten_minute_load_curve_fixture() {
        let s = one(Kind::LoadCurve, PT10M);
        assert_eq!(s.sampling_interval.as_deref(), Some("PT10M"));
        assert_eq!(s.readings.len(), 288);
        // "2026-09-29 00:10:00" ends the first interval: it starts at local midnight.
        assert_eq!(labels(PT10M)[0], "2026-09-29 00:10:00");
        assert_eq!(s.readings[0].time, at("2026-09-28T22:00:00Z"));
        assert_eq!(s.readings[287].time, at("2026-09-30T21:50:00Z"));
        assert!(s.readings.windows(2).all(|w| w[1].time - w[0].time == 600));
    }

    #[test]
    fn hourly_load_curve_fixture() {
        let s = one(Kind::LoadCurve, PT60M);
        assert_eq!(s.sampling_interval.as_deref(), Some("PT60M"));
        assert_eq!(s.readings.len(), 24);
        assert_eq!(labels(PT60M)[23], "2026-09-30 00:00:00");
        assert_eq!(s.readings[0].time, at("2026-09-28T22:00:00Z"));
        assert_eq!(s.readings[23].time, at("2026-09-29T21:00:00Z"));
        assert!(s.readings.windows(2).all(|w| w[1].time - w[0].time == 3600));
    }

    #[test]
    fn missing_step_falls_back_to_pas_or_fails() {
        let body = LOAD_CONS.replace("\"p\": \"PT30M\",", "");
        assert!(matches!(
            parse_measure(Kind::LoadCurve, &body),
            Err(ParseError::NoStep(_))
        ));
        let body = body.replacen("\"modeCalcul\"", "\"pas\": \"PT30M\", \"modeCalcul\"", 1);
        assert_eq!(
            one(Kind::LoadCurve, &body).readings[0].time,
            at("2026-09-28T22:00:00Z")
        );
    }

    #[test]
    fn autumn_day_has_50_distinct_increasing_instants() {
        // The repeated hour: 02:00 and 02:30 appear twice in the labels.
        let d = labels(AUTUMN);
        assert_eq!(d.len(), 50);
        assert_eq!(
            d[3..8],
            [
                "2026-10-25 02:00:00",
                "2026-10-25 02:30:00",
                "2026-10-25 02:00:00",
                "2026-10-25 02:30:00",
                "2026-10-25 03:00:00"
            ]
        );
        let s = one(Kind::LoadCurve, AUTUMN);
        assert_eq!(s.readings.len(), 50);
        assert_eq!(s.readings[0].time, at("2026-10-24T22:00:00Z"));
        assert_eq!(s.readings[49].time, at("2026-10-25T22:30:00Z"));
        for (i, w) in s.readings.windows(2).enumerate() {
            assert_eq!(w[1].time - w[0].time, 1800, "after point {i}");
        }
        // The second "02:00" ends at 03:00 CEST = 01:00Z (the clocks go back), so starts 00:30Z.
        assert_eq!(
            s.readings[5],
            Reading {
                time: at("2026-10-25T00:30:00Z"),
                value: 365.0
            }
        );
    }

    #[test]
    fn autumn_repeated_hour_with_a_gap_still_increases() {
        // The first 02:30 is a "null" point; order is still resolved from its timestamp.
        let mut body: serde_json::Value = serde_json::from_str(AUTUMN).unwrap();
        let first_0230 = &mut body["grandeur"][0]["points"][4];
        assert_eq!(first_0230["d"], "2026-10-25 02:30:00");
        first_0230["v"] = "null".into();
        let s = one(Kind::LoadCurve, &body.to_string());
        assert_eq!((s.readings.len(), s.gaps), (49, 1));
        assert!(s.readings.windows(2).all(|w| w[0].time < w[1].time));
        assert_eq!(
            s.readings[4],
            Reading {
                time: at("2026-10-25T00:30:00Z"),
                value: 365.0
            }
        );
    }

    #[test]
    fn spring_day_has_46_intervals_and_gaps_stay_gaps() {
        // 46 half-hours; the 21st is absent from the file, the 31st is "null".
        let d = labels(SPRING);
        assert_eq!(d.len(), 45);
        // The clocks go forward: 01:30 CET is followed by 03:00 CEST.
        assert_eq!(d[2..4], ["2027-03-28 01:30:00", "2027-03-28 03:00:00"]);
        let s = one(Kind::LoadCurve, SPRING);
        assert_eq!((s.readings.len(), s.gaps), (44, 1));
        let start = at("2027-03-27T23:00:00Z");
        let expected: Vec<i64> = (0..46)
            .filter(|i| *i != 20 && *i != 30)
            .map(|i| start + i * 1800)
            .collect();
        let times: Vec<i64> = s.readings.iter().map(|r| r.time).collect();
        assert_eq!(times, expected);
        assert_eq!(s.readings[43].time, at("2027-03-28T21:30:00Z"));
        // "03:00:00" (CEST) ends at 01:00Z: the interval started at 00:30Z.
        assert_eq!(
            s.readings[3],
            Reading {
                time: at("2027-03-28T00:30:00Z"),
                value: 2091.0
            }
        );
        // A label inside the gap (which Enedis should not send) reads with the winter offset.
        let gap = parse_local_datetime("2027-03-28 02:30:00").unwrap();
        assert_eq!(paris::resolve(gap, None), Some(at("2027-03-28T01:30:00Z")));
    }

    #[test]
    fn timestamps_and_steps() {
        let d = |s| parse_local_datetime(s).ok();
        assert_eq!(d("2026-09-29 00:30:00"), d("2026-09-29T00:30"));
        assert_eq!(d("2026-09-29 24:00:00"), d("2026-09-30 00:00:00"));
        assert!(d("2026-09-29").is_none());
        assert!(d("2026-02-30 00:00:00").is_none());
        assert_eq!(
            parse_local_day("2026-09-29 20:12:34").ok(),
            NaiveDate::from_ymd_opt(2026, 9, 29)
        );
        // The step's grammar is time::duration::clock_seconds' (tested there); here, only
        // that a step Enedis sends maps to seconds and a bad one to a parse error.
        assert_eq!(parse_step("PT30M").ok(), Some(1800));
        assert_eq!(parse_step("PT10M").ok(), Some(600));
        assert!(parse_step("P1D").is_err());
    }
}
