//! What a series path declared for an HTTP device means: its measurement and, above all, its
//! unit, against which every posted record is checked.
//!
//! Paths follow the component's generation-2 naming, `[direction/]quantity[/kind]/aggregation`:
//! `production/power/active/instant`, `consumption/energy/active/index`, `temperature/raw`. The
//! quantity (and for power and energy the kind) fixes the unit, so that a device cannot declare
//! a power series in Wh; a path this table does not know is a configuration error naming the
//! ones it does.

use crate::model::Measurement;

/// Flow directions a path may start with.
const DIRECTIONS: &[&str] = &["consumption", "production"];

/// Last segments a path may end with: how the values are aggregated.
pub(crate) const AGGREGATIONS: &[&str] = &["instant", "raw", "mean", "max", "min", "index", "sum"];

/// Electrical quantities with a kind: (quantity, kind, unit, measurement name).
const ELECTRICAL: &[(&str, &str, &str, &str)] = &[
    ("power", "active", "W", "active-power"),
    ("power", "apparent", "VA", "apparent-power"),
    ("power", "reactive", "var", "reactive-power"),
    ("energy", "active", "Wh", "active-energy"),
    ("energy", "apparent", "VAh", "apparent-energy"),
    ("energy", "reactive", "varh", "reactive-energy"),
];

/// Quantities without a kind: (quantity, measurement kind, unit).
const SENSORS: &[(&str, &str, &str)] = &[
    ("voltage", "electrical", "V"),
    ("current", "electrical", "A"),
    ("frequency", "electrical", "Hz"),
    ("temperature", "thermal", "Cel"),
    ("humidity", "environmental", "%RH"),
    ("co2", "environmental", "ppm"),
    ("pressure", "environmental", "Pa"),
    ("illuminance", "environmental", "lx"),
    ("battery", "electrical", "%EL"),
];

/// The measurement of a series path, or why the path is not one we know.
pub(crate) fn measurement(path: &str) -> Result<Measurement, String> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let direction = match parts.first().copied() {
        Some(d) if DIRECTIONS.contains(&d) => {
            parts.remove(0);
            d
        }
        _ => "",
    };
    let aggregation = match parts.pop() {
        Some(a) if AGGREGATIONS.contains(&a) => a,
        _ => {
            return Err(format!(
                "series {path:?}: the last segment must be one of {}",
                AGGREGATIONS.join(", ")
            ))
        }
    };
    let found = match parts.as_slice() {
        [quantity, kind] => ELECTRICAL
            .iter()
            .find(|(q, k, _, _)| q == quantity && k == kind)
            .map(|&(q, _, unit, name)| (name, q, "electrical", unit)),
        [quantity] if direction.is_empty() => SENSORS
            .iter()
            .find(|(q, _, _)| q == quantity)
            .map(|&(q, kind, unit)| (q, q, kind, unit)),
        _ => None,
    };
    let Some((name, quantity, kind, unit)) = found else {
        let electrical: Vec<String> = ELECTRICAL
            .iter()
            .map(|(q, k, _, _)| format!("[consumption/|production/]{q}/{k}/<aggregation>"))
            .collect();
        let sensors: Vec<String> = SENSORS
            .iter()
            .map(|(q, _, _)| format!("{q}/<aggregation>"))
            .collect();
        return Err(format!(
            "series {path:?} is not a known path; known: {}, {}",
            electrical.join(", "),
            sensors.join(", ")
        ));
    };
    Ok(Measurement {
        name: name.into(),
        direction: direction.into(),
        quantity: quantity.into(),
        kind: kind.into(),
        unit: unit.into(),
        aggregation: aggregation.into(),
        // Devices post when they like: no fixed interval is promised.
        sampling_interval: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_get_their_unit() {
        for (path, unit, direction) in [
            ("production/power/active/instant", "W", "production"),
            ("consumption/energy/active/index", "Wh", "consumption"),
            ("power/apparent/mean", "VA", ""),
            ("temperature/raw", "Cel", ""),
            ("battery/instant", "%EL", ""),
        ] {
            let m = measurement(path).unwrap();
            assert_eq!(m.unit, unit, "{path}");
            assert_eq!(m.direction, direction, "{path}");
        }
        let m = measurement("production/energy/active/index").unwrap();
        assert_eq!(
            (m.name.as_str(), m.aggregation.as_str()),
            ("active-energy", "index")
        );
    }

    #[test]
    fn unknown_paths_are_refused() {
        for path in [
            "",
            "production",
            "production/power/instant",
            "production/power/active/hourly",
            "production/temperature/raw",
            "water/raw",
            "power/active/instant/extra/instant",
        ] {
            assert!(measurement(path).is_err(), "{path}");
        }
        assert!(measurement("water/raw")
            .unwrap_err()
            .contains("temperature/<aggregation>"));
    }
}
