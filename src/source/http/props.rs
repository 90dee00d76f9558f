//! Property tests of the ingest decoders: random valid packs survive the trip JSON → readings →
//! our SenML XML (what subscribers receive) → readings unchanged, and random bytes, in any of
//! the three media types, are refused or accepted but never panic a decoder.

use minidom::Element;
use proptest::prelude::*;

use super::config::Device;
use super::decode::{decode, Format};
use super::readings::{readings, MAX_FUTURE_SECS};
use super::series::measurement;
use crate::config::Secret;
use crate::model::UsagePoint;
use crate::stanzas::senml::Pack;

const NOW: i64 = 1_764_300_000;
const RETENTION: std::time::Duration = std::time::Duration::from_secs(400 * 86_400);
const SERIES: &[&str] = &[
    "production/power/active/instant",
    "production/energy/active/index",
    "temperature/raw",
];

fn device() -> Device {
    Device {
        id: "pv-roof".into(),
        name: "Roof".into(),
        device_type: "electricity-meter".into(),
        token: Secret::new("0123456789abcdef"),
        series: SERIES
            .iter()
            .map(|p| (p.to_string(), measurement(p).unwrap()))
            .collect(),
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
        proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
    ]
}

/// A record: series index, time offset from the base time, value, and how it is named.
fn record() -> impl Strategy<Value = (usize, i64, f64, bool, bool)> {
    (
        0..SERIES.len(),
        0i64..100_000,
        value(),
        any::<bool>(),
        any::<bool>(),
    )
}

/// The JSON pack of these records: a base time (absolute, or relative to now when
/// `relative`), names bare or behind a URN base name, units given or not.
fn json_pack(base: i64, relative: bool, records: &[(usize, i64, f64, bool, bool)]) -> String {
    let bt = if relative { base - NOW } else { base };
    let items: Vec<serde_json::Value> = records
        .iter()
        .enumerate()
        .map(|(i, &(s, t, v, urn, unit))| {
            let mut r = serde_json::json!({"t": t, "v": v});
            if urn {
                r["n"] = format!("urn:dev:mac:0024befffe804ff1_{}", SERIES[s]).into();
            } else {
                r["n"] = SERIES[s].into();
            }
            if unit {
                r["u"] = measurement(SERIES[s]).unwrap().unit.into();
            }
            if i == 0 {
                r["bt"] = bt.into();
                r["bver"] = 26.into();
            }
            r
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_packs_round_trip_through_our_xml(
        age in 100_000i64..300 * 86_400,
        relative in any::<bool>(),
        records in proptest::collection::vec(record(), 1..60),
    ) {
        let device = device();
        let base = NOW - age;
        let json = json_pack(base, relative && age < 200_000_000, &records);
        let pack = decode(Format::Json, json.as_bytes()).unwrap();
        let first = readings(&pack, &device, NOW, RETENTION).unwrap();
        prop_assert_eq!(first.records, records.len());
        let total: usize = first.batches.iter().map(|b| b.readings.len()).sum();
        prop_assert!(total <= records.len());
        let up: UsagePoint = device.usage_point("home");
        for batch in &first.batches {
            let series = device.series_models().into_iter().find(|s| s.path == batch.series).unwrap();
            let pairs: Vec<(i64, f64)> = batch.readings.iter().map(|r| (r.time, r.value)).collect();
            let ours = Pack::from_readings(&series.identifier(&up), &series.measurement.unit, &pairs);
            let xml = String::from(&Element::from(&ours));
            let back = decode(Format::Xml, xml.as_bytes()).unwrap();
            let again = readings(&back, &device, NOW, RETENTION).unwrap();
            prop_assert_eq!(again.batches.len(), 1);
            prop_assert_eq!(&again.batches[0], batch);
        }
        for batch in &first.batches {
            prop_assert!(batch.readings.windows(2).all(|w| w[0].time < w[1].time));
            prop_assert!(batch.readings.iter().all(|r| r.time <= NOW + MAX_FUTURE_SECS));
        }
    }

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::Json, Format::Cbor, Format::Xml] {
            if let Ok(pack) = decode(format, &bytes) {
                let _ = readings(&pack, &device(), NOW, RETENTION);
            }
        }
    }

    #[test]
    fn random_cbor_arrays_of_maps_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        len in 0u8..24,
    ) {
        // An array header then anything: the decoder goes past the first byte more often.
        let mut bytes = vec![0x80 | len, 0xa0 | (len % 8)];
        bytes.extend(body);
        if let Ok(pack) = decode(Format::Cbor, &bytes) {
            let _ = readings(&pack, &device(), NOW, RETENTION);
        }
    }

    #[test]
    fn random_json_text_never_panics(text in "\\[\\{(\"(bn|bt|n|v|t|u|bver|vs|s)\":(-?[0-9]{1,20}(\\.[0-9]{1,5})?(e[0-9]{1,3})?|\"[a-z/_:]{0,20}\"|true|null|\\[\\]),?){0,6}\\}\\]") {
        if let Ok(pack) = decode(Format::Json, text.as_bytes()) {
            let _ = readings(&pack, &device(), NOW, RETENTION);
        }
    }
}
