//! What a consented Linky meter looks like to the component: its usage point and its series.

use super::parse::{Direction, Kind};
use crate::model::{Identifier, Measurement, Series, UsagePoint};

/// A PRM is 14 digits.
pub(crate) fn is_prm(text: &str) -> bool {
    text.len() == 14 && text.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn usage_point(source: &str, prm: &str) -> UsagePoint {
    UsagePoint {
        id: prm.to_owned(),
        source: source.to_owned(),
        device_type: "electricity-meter".into(),
        identifier: Identifier {
            authority: "enedis".into(),
            kind: "prm".into(),
            value: prm.to_owned(),
        },
        name: format!("Linky {prm}"),
        online: true,
    }
}

/// The measures a meter has, by the directions its consent covers (`soutirage`, `injection`).
pub(crate) fn measures(consumption: bool, production: bool) -> Vec<(Kind, Direction)> {
    let mut measures = Vec::new();
    if consumption {
        measures.extend([
            (Kind::LoadCurve, Direction::Consumption),
            (Kind::DailyEnergy, Direction::Consumption),
            (Kind::DailyMaxPower, Direction::Consumption),
        ]);
    }
    if production {
        measures.extend([
            (Kind::LoadCurve, Direction::Production),
            (Kind::DailyEnergy, Direction::Production),
        ]);
    }
    measures
}

/// The series of a measure.
pub(crate) fn series(prm: &str, kind: Kind, direction: Direction) -> Series {
    let (title, name, quantity, aggregation, step) = match kind {
        Kind::LoadCurve => (
            "Load curve (mean active power)",
            "active-power",
            "power",
            "mean",
            "PT30M",
        ),
        Kind::DailyEnergy => (
            "Daily active energy",
            "active-energy",
            "energy",
            "sum",
            "P1D",
        ),
        Kind::DailyMaxPower => (
            "Daily maximum apparent power",
            "apparent-power",
            "power",
            "max",
            "P1D",
        ),
    };
    let label = match direction {
        Direction::Consumption => "consumption",
        Direction::Production => "production",
    };
    Series {
        usage_point: prm.to_owned(),
        path: kind.path(direction),
        title: format!("{title}, {label}"),
        measurement: Measurement {
            name: name.into(),
            direction: direction.as_str().into(),
            quantity: quantity.into(),
            kind: "electrical".into(),
            unit: kind.unit().into(),
            aggregation: aggregation.into(),
            sampling_interval: step.into(),
        },
    }
}

/// The measure behind a series path, if it is one of ours.
pub(crate) fn measure_of(path: &str) -> Option<(Kind, Direction)> {
    [Direction::Consumption, Direction::Production]
        .into_iter()
        .flat_map(|d| {
            [Kind::LoadCurve, Kind::DailyEnergy, Kind::DailyMaxPower]
                .into_iter()
                .map(move |k| (k, d))
        })
        .find(|(k, d)| k.path(*d) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prms_are_fourteen_digits() {
        assert!(is_prm("99999999999991"));
        assert!(!is_prm("9999999999999"));
        assert!(!is_prm("9999999999999a"));
        assert!(!is_prm("../etc/passwd00"));
    }

    #[test]
    fn series_paths_map_back_to_their_measure() {
        for (kind, direction) in measures(true, true) {
            let s = series("99999999999991", kind, direction);
            assert_eq!(measure_of(&s.path), Some((kind, direction)));
            assert_eq!(s.measurement.unit, kind.unit());
        }
        assert_eq!(measure_of("consumption/power/active/instant"), None);
        assert_eq!(measures(true, false).len(), 3);
        assert_eq!(measures(false, true).len(), 2);
    }
}
