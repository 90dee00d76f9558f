//! The Quoalise payload: `<quoalise xmlns="urn:quoalise:0"><data><meta/><sensml/></data></quoalise>`.
//!
//! One metadata model ([`Meta`]), two renderings: generation 2 (flat `<measurement>` attributes,
//! used by `get_history`, pushes and PubSub items) and generation 1 (nested `<physical/>`,
//! `<business/>`, `<aggregate/>`, `<sampling/>`, exactly as the 2020 reference document shows,
//! used by `get_load_curve` / `get_daily`). `<meta>` is always written: the Python client asserts
//! it is there.

use minidom::Element;

use crate::model::{Identifier, Measurement};
use crate::stanzas::ns;
use crate::stanzas::senml::{Pack, SenmlError};

/// Which `<meta>` rendering to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// Flat `<measurement name direction quantity type unit aggregation sampling-interval/>`.
    Two,
    /// Nested `<measurement><physical/><business/><aggregate/><sampling/></measurement>`.
    One,
}

/// What is measured, and on which device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Meta {
    /// `electricity-meter`, `thermometer`, …
    pub(crate) device_type: String,
    pub(crate) identifier: Identifier,
    pub(crate) measurement: Measurement,
}

/// One `<data>`: metadata and readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub(crate) meta: Meta,
    pub sensml: Pack,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuoaliseError {
    #[error("expected <{0} xmlns='urn:quoalise:0'>")]
    Expected(&'static str),
    #[error("<meta> lacks {0}")]
    MissingMeta(&'static str),
    #[error(transparent)]
    Senml(#[from] SenmlError),
}

impl Meta {
    pub(crate) fn to_element(&self, generation: Generation) -> Element {
        let device = Element::builder("device", ns::QUOALISE)
            .attr(
                minidom::rxml::xml_ncname!("type").to_ncname(),
                &self.device_type,
            )
            .append(
                Element::builder("identifier", ns::QUOALISE)
                    .attr(
                        minidom::rxml::xml_ncname!("authority").to_ncname(),
                        &self.identifier.authority,
                    )
                    .attr(
                        minidom::rxml::xml_ncname!("type").to_ncname(),
                        &self.identifier.kind,
                    )
                    .attr(
                        minidom::rxml::xml_ncname!("value").to_ncname(),
                        &self.identifier.value,
                    ),
            );
        let measurement = match generation {
            Generation::Two => gen2_measurement(&self.measurement),
            Generation::One => gen1_measurement(&self.measurement),
        };
        Element::builder("meta", ns::QUOALISE)
            .append(device)
            .append(measurement)
            .build()
    }

    /// Reads either rendering back.
    pub(crate) fn from_element(el: &Element) -> Result<Meta, QuoaliseError> {
        if !el.is("meta", ns::QUOALISE) {
            return Err(QuoaliseError::Expected("meta"));
        }
        let device = el
            .get_child("device", ns::QUOALISE)
            .ok_or(QuoaliseError::MissingMeta("<device>"))?;
        let id = device
            .get_child("identifier", ns::QUOALISE)
            .ok_or(QuoaliseError::MissingMeta("<identifier>"))?;
        let m = el
            .get_child("measurement", ns::QUOALISE)
            .ok_or(QuoaliseError::MissingMeta("<measurement>"))?;
        let attr = |e: &Element, name: &str| e.attr(name).unwrap_or_default().to_owned();
        let measurement = if m.children().next().is_none() {
            Measurement {
                name: attr(m, "name"),
                direction: attr(m, "direction"),
                quantity: attr(m, "quantity"),
                kind: attr(m, "type"),
                unit: attr(m, "unit"),
                aggregation: attr(m, "aggregation"),
                sampling_interval: attr(m, "sampling-interval"),
            }
        } else {
            let child = |name: &str| m.get_child(name, ns::QUOALISE);
            let physical = child("physical");
            let business = child("business");
            let get =
                |e: Option<&Element>, name: &str| e.map(|e| attr(e, name)).unwrap_or_default();
            Measurement {
                name: get(business, "graph"),
                direction: get(business, "direction"),
                quantity: get(physical, "quantity"),
                kind: get(physical, "type"),
                unit: get(physical, "unit"),
                aggregation: gen1_to_aggregation(&get(child("aggregate"), "type")).to_owned(),
                sampling_interval: child("sampling")
                    .and_then(|s| s.attr("interval"))
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(seconds_to_iso)
                    .unwrap_or_default(),
            }
        };
        Ok(Meta {
            device_type: attr(device, "type"),
            identifier: Identifier {
                authority: attr(id, "authority"),
                kind: attr(id, "type"),
                value: attr(id, "value"),
            },
            measurement,
        })
    }
}

fn gen2_measurement(m: &Measurement) -> Element {
    use minidom::rxml::xml_ncname;
    let attrs = [
        (xml_ncname!("name"), &m.name),
        (xml_ncname!("direction"), &m.direction),
        (xml_ncname!("quantity"), &m.quantity),
        (xml_ncname!("type"), &m.kind),
        (xml_ncname!("unit"), &m.unit),
        (xml_ncname!("aggregation"), &m.aggregation),
        (xml_ncname!("sampling-interval"), &m.sampling_interval),
    ];
    attrs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .fold(
            Element::builder("measurement", ns::QUOALISE),
            |b, (n, v)| b.attr(n.to_ncname(), v),
        )
        .build()
}

/// The generation-1 nested measurement of the 2020 reference document.
fn gen1_measurement(m: &Measurement) -> Element {
    use minidom::rxml::xml_ncname;
    let physical = Element::builder("physical", ns::QUOALISE)
        .attr(xml_ncname!("quantity").to_ncname(), &m.quantity)
        .attr(xml_ncname!("type").to_ncname(), &m.kind)
        .attr(xml_ncname!("unit").to_ncname(), &m.unit);
    let business = Element::builder("business", ns::QUOALISE)
        .attr(xml_ncname!("graph").to_ncname(), gen1_graph(m))
        .attr(xml_ncname!("direction").to_ncname(), &m.direction);
    let aggregate = Element::builder("aggregate", ns::QUOALISE).attr(
        xml_ncname!("type").to_ncname(),
        aggregation_to_gen1(&m.aggregation),
    );
    let mut measurement = Element::builder("measurement", ns::QUOALISE)
        .append(physical)
        .append(business)
        .append(aggregate);
    if let Some(seconds) = iso_to_seconds(&m.sampling_interval) {
        measurement = measurement.append(
            Element::builder("sampling", ns::QUOALISE)
                .attr(xml_ncname!("interval").to_ncname(), seconds.to_string()),
        );
    }
    measurement.build()
}

/// Generation 1 names graphs after Enedis products.
fn gen1_graph(m: &Measurement) -> &'static str {
    match (m.quantity.as_str(), m.aggregation.as_str()) {
        ("power", "mean") => "load-profile",
        ("energy", "sum") => "daily-energy",
        ("power", "max") => "daily-max-power",
        _ => "measurement",
    }
}

fn aggregation_to_gen1(aggregation: &str) -> &str {
    match aggregation {
        "mean" => "average",
        other => other,
    }
}

fn gen1_to_aggregation(aggregate: &str) -> &str {
    match aggregate {
        "average" => "mean",
        other => other,
    }
}

/// `PT30M` → 1800, `P1D` → 86400; `None` for what we do not emit (years, months, fractions).
pub(crate) fn iso_to_seconds(iso: &str) -> Option<u64> {
    let rest = iso.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut total = 0u64;
    let mut parse = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| *u == c)?.1;
                total += number.parse::<u64>().ok()? * factor;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    parse(days, &[('D', 86_400), ('W', 604_800)])?;
    parse(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (total > 0).then_some(total)
}

fn seconds_to_iso(seconds: u64) -> String {
    if seconds.is_multiple_of(86_400) {
        return format!("P{}D", seconds / 86_400);
    }
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut out = String::from("PT");
    for (n, u) in [(h, 'H'), (m, 'M'), (s, 'S')] {
        if n > 0 {
            out += &format!("{n}{u}");
        }
    }
    out
}

impl Data {
    pub(crate) fn to_element(&self, generation: Generation) -> Element {
        Element::builder("data", ns::QUOALISE)
            .append(self.meta.to_element(generation))
            .append(Element::from(&self.sensml))
            .build()
    }

    pub(crate) fn from_element(el: &Element) -> Result<Data, QuoaliseError> {
        if !el.is("data", ns::QUOALISE) {
            return Err(QuoaliseError::Expected("data"));
        }
        let meta = el
            .get_child("meta", ns::QUOALISE)
            .ok_or(QuoaliseError::MissingMeta("itself"))?;
        let sensml = el
            .get_child("sensml", ns::SENML)
            .ok_or(QuoaliseError::Senml(SenmlError::NotSensml))?;
        Ok(Data {
            meta: Meta::from_element(meta)?,
            sensml: Pack::try_from(sensml)?,
        })
    }
}

/// `<quoalise xmlns="urn:quoalise:0">` holding one or more `<data>`.
pub(crate) fn quoalise(data: &[Data], generation: Generation) -> Element {
    Element::builder("quoalise", ns::QUOALISE)
        .append_all(data.iter().map(|d| d.to_element(generation)))
        .build()
}

/// The `<data>` elements of a `<quoalise>` element.
pub fn parse_quoalise(el: &Element) -> Result<Vec<Data>, QuoaliseError> {
    if !el.is("quoalise", ns::QUOALISE) {
        return Err(QuoaliseError::Expected("quoalise"));
    }
    el.children()
        .filter(|c| c.is("data", ns::QUOALISE))
        .map(Data::from_element)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            device_type: "electricity-meter".into(),
            identifier: Identifier {
                authority: "enedis".into(),
                kind: "prm".into(),
                value: "10284856584123".into(),
            },
            measurement: Measurement {
                name: "active-power".into(),
                direction: "production".into(),
                quantity: "power".into(),
                kind: "electrical".into(),
                unit: "W".into(),
                aggregation: "mean".into(),
                sampling_interval: "PT30M".into(),
            },
        }
    }

    #[test]
    fn gen1_meta_is_exactly_the_reference_document() {
        let expected: Element = "<meta xmlns='urn:quoalise:0'>\
            <device type='electricity-meter'><identifier authority='enedis' type='prm' value='10284856584123'/></device>\
            <measurement><physical quantity='power' type='electrical' unit='W'/>\
            <business graph='load-profile' direction='production'/>\
            <aggregate type='average'/><sampling interval='1800'/></measurement></meta>"
            .parse()
            .unwrap();
        assert_eq!(meta().to_element(Generation::One), expected);
    }

    #[test]
    fn gen2_meta_is_flat() {
        let expected: Element = "<meta xmlns='urn:quoalise:0'>\
            <device type='electricity-meter'><identifier authority='enedis' type='prm' value='10284856584123'/></device>\
            <measurement name='active-power' direction='production' quantity='power' type='electrical' unit='W' aggregation='mean' sampling-interval='PT30M'/></meta>"
            .parse()
            .unwrap();
        assert_eq!(meta().to_element(Generation::Two), expected);
    }

    #[test]
    fn both_renderings_read_back() {
        for generation in [Generation::One, Generation::Two] {
            let el = meta().to_element(generation);
            let back = Meta::from_element(&el).unwrap();
            let mut expected = meta();
            if generation == Generation::One {
                // Generation 1 has no measurement name; it carries the graph instead.
                expected.measurement.name = "load-profile".into();
            }
            assert_eq!(back, expected, "{generation:?}");
        }
    }

    #[test]
    fn data_round_trip_and_errors() {
        let data = Data {
            meta: meta(),
            sensml: Pack::from_readings(
                "urn:dev:prm:10284856584123_production/power/active/raw",
                "W",
                &[(1600041600, 245.0), (1600043400, 420.0)],
            ),
        };
        let el = quoalise(std::slice::from_ref(&data), Generation::Two);
        assert_eq!(parse_quoalise(&el).unwrap(), [data]);
        let no_meta: Element = "<quoalise xmlns='urn:quoalise:0'><data><sensml xmlns='urn:ietf:params:xml:ns:senml'/></data></quoalise>".parse().unwrap();
        assert!(matches!(
            parse_quoalise(&no_meta),
            Err(QuoaliseError::MissingMeta(_))
        ));
        let wrong: Element = "<quoalise xmlns='urn:other'/>".parse().unwrap();
        assert_eq!(
            parse_quoalise(&wrong),
            Err(QuoaliseError::Expected("quoalise"))
        );
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_to_seconds("PT30M"), Some(1800));
        assert_eq!(iso_to_seconds("P1D"), Some(86_400));
        assert_eq!(iso_to_seconds("PT1H30M"), Some(5400));
        assert_eq!(iso_to_seconds("PT2S"), Some(2));
        assert_eq!(iso_to_seconds(""), None);
        assert_eq!(iso_to_seconds("P1Y"), None);
        assert_eq!(iso_to_seconds("PT1.5S"), None);
        assert_eq!(seconds_to_iso(1800), "PT30M");
        assert_eq!(seconds_to_iso(86_400), "P1D");
    }
}
