//! RFC 8428: Sensor Measurement Lists (SenML), XML representation.
//!
//! Records keep their base fields as written; [`Pack::resolve`] applies RFC 8428 §4.6 (name =
//! `bn` + `n`, time = `bt` + `t`, value = `bv` + `v`, `u` overriding `bu`), which is what
//! receivers must do (the old Python client concatenated strings instead). On output, integers are
//! written without a fraction, and a pack using a secondary unit (`Wh`, `kWh`) declares
//! `bver="26"` (RFC 9100: base version 10 + the secondary-units feature bit 16).

use minidom::Element;

use crate::stanzas::ns;

/// Base version announced when a secondary unit (RFC 8798 registry) is used.
pub(crate) const BVER_SECONDARY_UNITS: i64 = 26;

/// Units of the SenML secondary-units registry (RFC 8798) that we may emit; a pack using one of
/// them must declare the feature.
const SECONDARY_UNITS: &[&str] = &[
    "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "kVAh",
    "Wh/km", "KiB", "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3", "mm/h", "m/h",
    "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h",
];

pub(crate) fn is_secondary_unit(unit: &str) -> bool {
    SECONDARY_UNITS.contains(&unit)
}

/// Why a SenML element was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SenmlError {
    #[error("expected <sensml xmlns='{}'>", ns::SENML)]
    NotSensml,
    #[error("record {index}: attribute {attr}: {value:?} is not a number")]
    BadNumber {
        index: usize,
        attr: &'static str,
        value: String,
    },
    #[error("record {index}: vb must be true or false")]
    BadBool { index: usize },
    #[error("record {index}: no name (neither bn nor n so far)")]
    NoName { index: usize },
    #[error("record {index}: more than one value (v, vs, vb, vd)")]
    SeveralValues { index: usize },
}

/// One `<senml/>` record, fields as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    pub(crate) bn: Option<String>,
    pub(crate) bt: Option<f64>,
    pub(crate) bu: Option<String>,
    pub(crate) bv: Option<f64>,
    pub(crate) bs: Option<f64>,
    pub(crate) bver: Option<i64>,
    pub(crate) n: Option<String>,
    pub(crate) u: Option<String>,
    pub(crate) v: Option<f64>,
    pub(crate) vs: Option<String>,
    pub(crate) vb: Option<bool>,
    pub(crate) vd: Option<String>,
    pub(crate) s: Option<f64>,
    pub(crate) t: Option<f64>,
    pub(crate) ut: Option<f64>,
}

/// A record's value after resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    String(String),
    Bool(bool),
    Data(String),
    /// A record with only a sum.
    None,
}

/// A record after RFC 8428 base-field resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: String,
    /// Seconds since the Unix epoch (RFC 8428 treats small values as relative to now; we keep
    /// them as given since Quoalise always sends absolute times).
    pub time: f64,
    pub(crate) unit: Option<String>,
    pub value: Value,
    pub(crate) sum: Option<f64>,
}

/// A `<sensml/>` pack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pack {
    pub(crate) records: Vec<Record>,
}

impl Pack {
    /// A pack of numeric readings of one series: `bn`, `bt`, `bu` on the first record and
    /// offsets after it. `readings` are (unix seconds, value), in any order the caller wants kept.
    pub fn from_readings(base_name: &str, unit: &str, readings: &[(i64, f64)]) -> Pack {
        let Some(&(base_time, _)) = readings.first() else {
            return Pack::default();
        };
        let records = readings
            .iter()
            .enumerate()
            .map(|(i, &(time, value))| {
                let mut r = Record {
                    v: Some(value),
                    ..Record::default()
                };
                if i == 0 {
                    r.bn = Some(base_name.to_owned());
                    r.bt = Some(base_time as f64);
                    r.bu = Some(unit.to_owned());
                    if is_secondary_unit(unit) {
                        r.bver = Some(BVER_SECONDARY_UNITS);
                    }
                } else {
                    r.t = Some((time - base_time) as f64);
                }
                r
            })
            .collect();
        Pack { records }
    }

    /// Applies base fields to every record (RFC 8428 §4.6).
    pub fn resolve(&self) -> Result<Vec<Resolved>, SenmlError> {
        let (mut bn, mut bt, mut bu, mut bv, mut bs) =
            (String::new(), 0.0, None::<String>, 0.0, 0.0);
        let mut out = Vec::with_capacity(self.records.len());
        for (index, r) in self.records.iter().enumerate() {
            if let Some(x) = &r.bn {
                bn = x.clone();
            }
            if let Some(x) = r.bt {
                bt = x;
            }
            if let Some(x) = &r.bu {
                bu = Some(x.clone());
            }
            if let Some(x) = r.bv {
                bv = x;
            }
            if let Some(x) = r.bs {
                bs = x;
            }
            let name = format!("{bn}{}", r.n.as_deref().unwrap_or(""));
            if name.is_empty() {
                return Err(SenmlError::NoName { index });
            }
            let values = [
                r.v.is_some(),
                r.vs.is_some(),
                r.vb.is_some(),
                r.vd.is_some(),
            ];
            if values.iter().filter(|x| **x).count() > 1 {
                return Err(SenmlError::SeveralValues { index });
            }
            let value = if let Some(v) = r.v {
                Value::Number(bv + v)
            } else if let Some(v) = &r.vs {
                Value::String(v.clone())
            } else if let Some(v) = r.vb {
                Value::Bool(v)
            } else if let Some(v) = &r.vd {
                Value::Data(v.clone())
            } else {
                Value::None
            };
            out.push(Resolved {
                name,
                time: bt + r.t.unwrap_or(0.0),
                unit: r.u.clone().or_else(|| bu.clone()),
                value,
                sum: r.s.map(|s| bs + s),
            });
        }
        Ok(out)
    }
}

/// Writes a number the way SenML receivers expect: integers without a fraction (`1800`, not
/// `1800.0`), other values in the shortest form that reads back identically.
pub(crate) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn parse_number(text: &str, index: usize, attr: &'static str) -> Result<f64, SenmlError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| SenmlError::BadNumber {
            index,
            attr,
            value: text.to_owned(),
        })
}

impl TryFrom<&Element> for Pack {
    type Error = SenmlError;

    fn try_from(el: &Element) -> Result<Pack, SenmlError> {
        if !el.is("sensml", ns::SENML) {
            return Err(SenmlError::NotSensml);
        }
        let mut records = Vec::new();
        for (index, child) in el
            .children()
            .filter(|c| c.is("senml", ns::SENML))
            .enumerate()
        {
            let num = |attr: &'static str| {
                child
                    .attr(attr)
                    .map(|t| parse_number(t, index, attr))
                    .transpose()
            };
            let text = |attr: &str| child.attr(attr).map(str::to_owned);
            let vb = match child.attr("vb") {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Err(SenmlError::BadBool { index }),
            };
            let bver = num("bver")?.map(|x| x as i64);
            records.push(Record {
                bn: text("bn"),
                bt: num("bt")?,
                bu: text("bu"),
                bv: num("bv")?,
                bs: num("bs")?,
                bver,
                n: text("n"),
                u: text("u"),
                v: num("v")?,
                vs: text("vs"),
                vb,
                vd: text("vd"),
                s: num("s")?,
                t: num("t")?,
                ut: num("ut")?,
            });
        }
        Ok(Pack { records })
    }
}

impl From<&Pack> for Element {
    fn from(pack: &Pack) -> Element {
        Element::builder("sensml", ns::SENML)
            .append_all(pack.records.iter().map(record_element))
            .build()
    }
}

fn record_element(r: &Record) -> Element {
    use minidom::rxml::{xml_ncname, NcNameStr};
    let text = |name: &'static NcNameStr, x: &Option<String>| x.clone().map(|v| (name, v));
    let num = |name: &'static NcNameStr, x: Option<f64>| x.map(|v| (name, format_number(v)));
    // Attribute order follows RFC 8428's examples: base fields first.
    let attrs = [
        text(xml_ncname!("bn"), &r.bn),
        num(xml_ncname!("bt"), r.bt),
        text(xml_ncname!("bu"), &r.bu),
        num(xml_ncname!("bv"), r.bv),
        num(xml_ncname!("bs"), r.bs),
        r.bver.map(|v| (xml_ncname!("bver"), v.to_string())),
        text(xml_ncname!("n"), &r.n),
        text(xml_ncname!("u"), &r.u),
        num(xml_ncname!("t"), r.t),
        num(xml_ncname!("v"), r.v),
        text(xml_ncname!("vs"), &r.vs),
        r.vb.map(|v| (xml_ncname!("vb"), v.to_string())),
        text(xml_ncname!("vd"), &r.vd),
        num(xml_ncname!("s"), r.s),
        num(xml_ncname!("ut"), r.ut),
    ];
    attrs
        .into_iter()
        .flatten()
        .fold(Element::builder("senml", ns::SENML), |b, (name, value)| {
            b.attr(name.to_ncname(), value)
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Pack, SenmlError> {
        let el: Element = xml.parse().unwrap();
        Pack::try_from(&el)
    }

    #[test]
    fn serialises_integers_without_fraction() {
        let pack = Pack::from_readings(
            "urn:dev:prm:30001610071843_consumption/power/active/raw",
            "W",
            &[(1583016600, 100.0), (1583018400, 101.5)],
        );
        let xml = String::from(&Element::from(&pack));
        assert_eq!(
            xml,
            "<sensml xmlns='urn:ietf:params:xml:ns:senml'>\
             <senml bn='urn:dev:prm:30001610071843_consumption/power/active/raw' bt='1583016600' bu='W' v='100'/>\
             <senml t='1800' v='101.5'/></sensml>"
        );
    }

    #[test]
    fn secondary_units_declare_bver() {
        let pack = Pack::from_readings("x", "Wh", &[(0, 1.0)]);
        assert_eq!(pack.records[0].bver, Some(26));
        let pack = Pack::from_readings("x", "W", &[(0, 1.0)]);
        assert_eq!(pack.records[0].bver, None);
        assert!(Pack::from_readings("x", "W", &[]).records.is_empty());
    }

    #[test]
    fn round_trip() {
        let pack = Pack::from_readings("n", "Cel", &[(10, 21.25), (70, -3.0), (130, 0.1)]);
        let back = Pack::try_from(&Element::from(&pack)).unwrap();
        assert_eq!(back, pack);
    }

    #[test]
    fn resolves_base_fields_per_rfc() {
        let pack = parse(
            "<s:sensml xmlns:s='urn:ietf:params:xml:ns:senml'>\
             <s:senml bn='urn:dev:prm:1_' bt='1638313200.0' bu='W' bv='10' n='a' v='1'/>\
             <s:senml t='1800.0' n='b' v='2' u='kW'/>\
             <s:senml t='3600'/>\
             <s:senml bn='other' n='' vs='hello'/>\
             </s:sensml>",
        )
        .unwrap();
        let r = pack.resolve().unwrap();
        assert_eq!(r[0].name, "urn:dev:prm:1_a");
        assert_eq!(r[0].time, 1638313200.0);
        assert_eq!(r[0].value, Value::Number(11.0));
        assert_eq!(r[1].unit.as_deref(), Some("kW"));
        assert_eq!(r[1].time, 1638315000.0);
        assert_eq!(r[2].name, "urn:dev:prm:1_");
        assert_eq!(r[2].unit.as_deref(), Some("W"));
        assert_eq!(r[2].value, Value::None);
        assert_eq!(r[3].name, "other");
        assert_eq!(r[3].value, Value::String("hello".into()));
    }

    #[test]
    fn rejects_invalid_input() {
        assert_eq!(
            parse("<sensml xmlns='urn:other'/>"),
            Err(SenmlError::NotSensml)
        );
        let ns = "xmlns='urn:ietf:params:xml:ns:senml'";
        assert!(matches!(
            parse(&format!("<sensml {ns}><senml bn='x' v='abc'/></sensml>")),
            Err(SenmlError::BadNumber { attr: "v", .. })
        ));
        assert!(matches!(
            parse(&format!("<sensml {ns}><senml bn='x' v='NaN'/></sensml>")),
            Err(SenmlError::BadNumber { .. })
        ));
        assert!(matches!(
            parse(&format!("<sensml {ns}><senml bn='x' vb='yes'/></sensml>")),
            Err(SenmlError::BadBool { index: 0 })
        ));
        let no_name = parse(&format!("<sensml {ns}><senml v='1'/></sensml>")).unwrap();
        assert_eq!(no_name.resolve(), Err(SenmlError::NoName { index: 0 }));
        let two = parse(&format!(
            "<sensml {ns}><senml bn='x' v='1' vs='a'/></sensml>"
        ))
        .unwrap();
        assert_eq!(two.resolve(), Err(SenmlError::SeveralValues { index: 0 }));
    }

    #[test]
    fn number_format() {
        assert_eq!(format_number(1800.0), "1800");
        assert_eq!(format_number(-3.0), "-3");
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(1e20), "100000000000000000000");
    }
}
