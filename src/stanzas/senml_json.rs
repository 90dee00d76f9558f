//! RFC 8428: SenML in its JSON representation (`application/senml+json`), written record by
//! record for `export`, so that an answer is measured while it is built (pages below the stanza
//! limit) or streamed (the download link) without holding the whole pack.
//!
//! A pack is a JSON array of records. The first record of each series carries the base name
//! (the series identifier, `urn:dev:<kind>:<id>_<path>`), the base time (absolute unix seconds)
//! and the base unit, plus `bver` 26 when the unit is a secondary unit (RFC 8798, as in the XML
//! answers); the records after it carry only `t` (seconds after the base time) and `v`, as RFC
//! 8428 §4.1 allows: base values apply until the next record that sets them. Resolving a pack
//! (§4.6) therefore gives every reading its series' name, its absolute time and its unit.

use super::senml::{format_number, is_secondary_unit, BVER_SECONDARY_UNITS};

/// The media type of a pack.
pub const CONTENT_TYPE: &str = "application/senml+json";

/// The first record of a series: `{"bn":…,"bt":…,"bu":…,"v":…}`.
pub(crate) fn first_record(base_name: &str, unit: &str, time: i64, value: f64) -> String {
    let bver = if is_secondary_unit(unit) {
        format!(",\"bver\":{BVER_SECONDARY_UNITS}")
    } else {
        String::new()
    };
    format!(
        "{{\"bn\":{},\"bt\":{time},\"bu\":{}{bver},\"v\":{}}}",
        json_string(base_name),
        json_string(unit),
        format_number(value)
    )
}

/// A later record of the same series, `offset` seconds after its base time: `{"t":…,"v":…}`.
pub(crate) fn next_record(offset: i64, value: f64) -> String {
    format!("{{\"t\":{offset},\"v\":{}}}", format_number(value))
}

fn json_string(text: &str) -> String {
    // Serialising a str cannot fail; the fallback keeps the pack valid JSON regardless.
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Bytes `record` takes as XML character data (`<`, `>`, `&`, CR are escaped): what a record
/// costs in a stanza.
pub(crate) fn xml_size(record: &str) -> usize {
    record.len()
        + record
            .bytes()
            .filter(|b| matches!(b, b'<' | b'>' | b'&' | b'\r'))
            .count()
            * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_resolve_to_the_readings() {
        let pack = format!(
            "[{},{},{}]",
            first_record(
                "urn:dev:prm:1_consumption/energy/active/daily",
                "Wh",
                1_790_632_800,
                12.5
            ),
            next_record(86_400, 13.0),
            first_record("urn:dev:prm:1_x<&>\"", "W", 5, -0.25),
        );
        let records: Vec<serde_json::Value> = serde_json::from_str(&pack).unwrap();
        assert_eq!(
            records,
            [
                serde_json::json!({"bn": "urn:dev:prm:1_consumption/energy/active/daily",
                    "bt": 1_790_632_800, "bu": "Wh", "bver": 26, "v": 12.5}),
                serde_json::json!({"t": 86_400, "v": 13}),
                serde_json::json!({"bn": "urn:dev:prm:1_x<&>\"", "bt": 5, "bu": "W", "v": -0.25}),
            ]
        );
        assert_eq!(xml_size("<&>"), 3 + 12);
    }
}
