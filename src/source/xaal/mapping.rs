//! From xAAL schemas to Quoalise series: which attribute of which device class feeds which
//! series path, in which unit, with which scaling.
//!
//! Units are those of `xaal-schemas` (docs/architecture.md §5.3), except energies, stored in Wh
//! (VAh) like every other energy series of the component rather than in kWh.

use crate::model::{Measurement, Series};

use super::message::Value;

/// One series a device class produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SeriesSpec {
    /// The attribute of the schema that carries it.
    pub(crate) attribute: &'static str,
    /// Series path (PubSub node).
    pub(crate) path: &'static str,
    pub(crate) title: &'static str,
    /// `Measurement::name`.
    pub(crate) name: &'static str,
    /// `consumption`, or empty for sensors.
    pub(crate) direction: &'static str,
    pub(crate) quantity: &'static str,
    pub(crate) kind: &'static str,
    /// SenML unit of the stored value.
    pub(crate) unit: &'static str,
    /// `instant` for samples, `index` for cumulative counters.
    pub(crate) aggregation: &'static str,
    /// Stored value = attribute value × scale.
    pub(crate) scale: f64,
}

// A table row: the positional form keeps the tables below readable.
#[allow(clippy::too_many_arguments)]
const fn spec(
    attribute: &'static str,
    path: &'static str,
    title: &'static str,
    name: &'static str,
    direction: &'static str,
    quantity: &'static str,
    kind: &'static str,
    unit: &'static str,
    aggregation: &'static str,
    scale: f64,
) -> SeriesSpec {
    SeriesSpec {
        attribute,
        path,
        title,
        name,
        direction,
        quantity,
        kind,
        unit,
        aggregation,
        scale,
    }
}

const ACTIVE_POWER: SeriesSpec = spec(
    "power",
    "consumption/power/active/instant",
    "Active power",
    "active-power",
    "consumption",
    "power",
    "electrical",
    "W",
    "instant",
    1.0,
);

const ACTIVE_ENERGY: SeriesSpec = spec(
    "energy",
    "consumption/energy/active/index",
    "Active energy index",
    "active-energy",
    "consumption",
    "energy",
    "electrical",
    "Wh",
    "index",
    1000.0, // kWh
);

const POWERMETER: &[SeriesSpec] = &[ACTIVE_POWER, ACTIVE_ENERGY];

/// `powermeter.extended` adds the mains voltage and the current drawn.
const POWERMETER_EXTENDED: &[SeriesSpec] = &[
    ACTIVE_POWER,
    ACTIVE_ENERGY,
    sensor(
        "voltage",
        "voltage/raw",
        "Voltage",
        "voltage",
        "electrical",
        "V",
    ),
    sensor(
        "current",
        "current/raw",
        "Current",
        "current",
        "electrical",
        "A",
    ),
];

const APPARENT_POWERMETER: &[SeriesSpec] = &[
    spec(
        "power",
        "consumption/power/apparent/instant",
        "Apparent power",
        "apparent-power",
        "consumption",
        "power",
        "electrical",
        "VA",
        "instant",
        1.0,
    ),
    spec(
        "energy",
        "consumption/energy/apparent/index",
        "Apparent energy index",
        "apparent-energy",
        "consumption",
        "energy",
        "electrical",
        "VAh",
        "index",
        1.0,
    ),
];

/// A sensor with one attribute and no direction.
const fn sensor(
    attribute: &'static str,
    path: &'static str,
    title: &'static str,
    quantity: &'static str,
    kind: &'static str,
    unit: &'static str,
) -> SeriesSpec {
    spec(
        attribute, path, title, quantity, "", quantity, kind, unit, "instant", 1.0,
    )
}

const THERMOMETER: &[SeriesSpec] = &[sensor(
    "temperature",
    "temperature/raw",
    "Temperature",
    "temperature",
    "thermal",
    "Cel",
)];
const HYGROMETER: &[SeriesSpec] = &[sensor(
    "humidity",
    "humidity/raw",
    "Relative humidity",
    "humidity",
    "environmental",
    "%RH",
)];
const CO2METER: &[SeriesSpec] = &[sensor(
    "co2",
    "co2/raw",
    "CO2 concentration",
    "co2",
    "environmental",
    "ppm",
)];
const BAROMETER: &[SeriesSpec] = &[sensor(
    "pressure",
    "pressure/raw",
    "Atmospheric pressure",
    "pressure",
    "environmental",
    "mbar",
)];
const LUXMETER: &[SeriesSpec] = &[sensor(
    "illuminance",
    "illuminance/raw",
    "Illuminance",
    "illuminance",
    "environmental",
    "lx",
)];
const BATTERY: &[SeriesSpec] = &[sensor(
    "level",
    "battery/raw",
    "Battery level",
    "battery-level",
    "electrical",
    "%EL",
)];

/// The series of a `class.subclass` dev_type: chosen by class (any power meter has power and
/// energy), plus what a known subclass adds. Unknown classes have none.
pub(crate) fn series_specs(dev_type: &str) -> &'static [SeriesSpec] {
    if dev_type == "powermeter.extended" {
        return POWERMETER_EXTENDED;
    }
    match dev_type.split('.').next().unwrap_or("") {
        "powermeter" => POWERMETER,
        "apparentpowermeter" => APPARENT_POWERMETER,
        "thermometer" => THERMOMETER,
        "hygrometer" => HYGROMETER,
        "co2meter" => CO2METER,
        "barometer" => BAROMETER,
        "luxmeter" => LUXMETER,
        "battery" => BATTERY,
        _ => &[],
    }
}

/// The series declared for a device of `dev_type`.
pub(crate) fn series(usage_point: &str, dev_type: &str) -> Vec<Series> {
    series_specs(dev_type)
        .iter()
        .map(|s| Series {
            usage_point: usage_point.to_owned(),
            path: s.path.to_owned(),
            title: s.title.to_owned(),
            measurement: Measurement {
                name: s.name.into(),
                direction: s.direction.into(),
                quantity: s.quantity.into(),
                kind: s.kind.into(),
                unit: s.unit.into(),
                aggregation: s.aggregation.into(),
                // Devices report on change, not on a schedule.
                sampling_interval: String::new(),
            },
        })
        .collect()
}

/// The stored value of an attribute: a finite number, scaled. Anything else (null before the
/// first measurement, text, lists) is not a reading.
pub(crate) fn reading_value(spec: &SeriesSpec, value: &Value) -> Option<f64> {
    let v = value.as_f64().filter(|v| v.is_finite())? * spec.scale;
    if spec.scale == 1.0 {
        return Some(v);
    }
    // 0.1 kWh × 1000 is 100.00000000000001 Wh: keep milli-units, no binary noise.
    let rounded = (v * 1000.0).round() / 1000.0;
    rounded.is_finite().then_some(rounded)
}

/// `(series path, stored value)` of every attribute of `body` that `dev_type` maps.
pub(crate) fn readings<'a>(
    dev_type: &str,
    body: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Vec<(&'static str, f64)> {
    let specs = series_specs(dev_type);
    body.into_iter()
        .filter_map(|(name, value)| {
            let spec = specs.iter().find(|s| s.attribute == name)?;
            Some((spec.path, reading_value(spec, value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn body(entries: &[(&str, Value)]) -> BTreeMap<String, Value> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn powermeter_power_and_energy_in_wh() {
        let b = body(&[
            ("power", Value::Int(987)),
            ("energy", Value::Float(42.25)),
            ("devices", Value::Array(vec![])),
        ]);
        let mut got = readings("powermeter.basic", &b);
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            got,
            [
                ("consumption/energy/active/index", 42_250.0),
                ("consumption/power/active/instant", 987.0),
            ]
        );
        assert_eq!(
            readings(
                "powermeter.extended",
                &body(&[("energy", Value::Float(0.1))])
            ),
            [("consumption/energy/active/index", 100.0)]
        );
    }

    #[test]
    fn extended_powermeter_adds_voltage_and_current() {
        let paths: Vec<(String, String)> = series("u", "powermeter.extended")
            .into_iter()
            .map(|s| (s.path, s.measurement.unit))
            .collect();
        assert_eq!(
            paths,
            [
                ("consumption/power/active/instant".into(), "W".into()),
                ("consumption/energy/active/index".into(), "Wh".into()),
                ("voltage/raw".into(), "V".into()),
                ("current/raw".into(), "A".into()),
            ]
        );
        let b = body(&[("voltage", Value::Float(231.5)), ("current", Value::Int(4))]);
        let mut got = readings("powermeter.extended", &b);
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got, [("current/raw", 4.0), ("voltage/raw", 231.5)]);
        // Other power meters have no such series: their voltage is not a reading.
        assert!(readings("powermeter.basic", &b).is_empty());
    }

    #[test]
    fn sensors_keep_their_units() {
        for (dev_type, attribute, path, unit) in [
            ("thermometer.basic", "temperature", "temperature/raw", "Cel"),
            ("hygrometer.basic", "humidity", "humidity/raw", "%RH"),
            ("co2meter.basic", "co2", "co2/raw", "ppm"),
            ("barometer.basic", "pressure", "pressure/raw", "mbar"),
            ("luxmeter.basic", "illuminance", "illuminance/raw", "lx"),
            ("battery.basic", "level", "battery/raw", "%EL"),
        ] {
            let s = series("u", dev_type);
            assert_eq!(s.len(), 1, "{dev_type}");
            assert_eq!(s[0].path, path);
            assert_eq!(s[0].measurement.unit, unit);
            assert_eq!(s[0].measurement.aggregation, "instant");
            assert_eq!(
                readings(dev_type, &body(&[(attribute, Value::Float(21.5))])),
                [(path, 21.5)]
            );
        }
        assert_eq!(series("u", "powermeter.basic")[1].measurement.unit, "Wh");
        assert_eq!(
            series("u", "apparentpowermeter.basic")[0].measurement.unit,
            "VA"
        );
    }

    #[test]
    fn unknown_schemas_and_values_give_nothing() {
        assert!(series("u", "lamp.dimmer").is_empty());
        assert!(series("u", "").is_empty());
        assert!(readings("lamp.basic", &body(&[("light", Value::Bool(true))])).is_empty());
        let b = body(&[
            ("temperature", Value::Null),
            ("humidity", Value::Float(50.0)),
        ]);
        assert!(readings("thermometer.basic", &b).is_empty());
        for v in [
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Text("20".into()),
        ] {
            assert!(readings("thermometer.basic", &body(&[("temperature", v)])).is_empty());
        }
        assert!(readings(
            "powermeter.basic",
            &body(&[("energy", Value::Float(f64::MAX))])
        )
        .is_empty());
    }
}
