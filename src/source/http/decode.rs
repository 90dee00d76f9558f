//! The three SenML bodies a device may post, decoded into one record list ([`Pack`]), the model
//! `crate::stanzas::senml` already resolves.
//!
//! Every decoder is bounded and never recursive over the input: JSON through `serde_json`'s own
//! nesting limit (128) into a flat array of objects, CBOR through `ciborium` with a recursion
//! limit of [`CBOR_DEPTH`], XML through rxml's iterative reader, refused past two levels
//! (`<sensml>` and its `<senml>` records). What the body may weigh is the web server's
//! `[web] max_body`. A refusal names the record (its index in the pack) and the field, so that
//! whoever wrote the gateway's code can find the mistake.

use std::io::Cursor;

use minidom::rxml::{Options, RawReader};
use minidom::tree_builder::TreeBuilder;
use minidom::Element;

use crate::stanzas::senml::{Pack, Record, SenmlError};

/// Deepest CBOR item accepted: the pack (1), a record (2), a value (3); one more for slack.
pub(crate) const CBOR_DEPTH: usize = 4;

/// Deepest XML accepted: `<sensml>` and its `<senml/>` records.
const XML_DEPTH: usize = 2;

/// A body's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Cbor,
    Xml,
}

impl Format {
    /// The format of a `Content-Type` value (parameters ignored), if it is one of RFC 8428's.
    pub(crate) fn of_content_type(value: &str) -> Option<Format> {
        let essence = value.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/senml+json" => Some(Format::Json),
            "application/senml+cbor" => Some(Format::Cbor),
            "application/senml+xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

/// Why a pack was refused: the record (index in the pack) and field when there is one, and
/// what is wrong, for the problem document of the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) record: Option<usize>,
    pub(crate) field: Option<String>,
    pub(crate) detail: String,
}

impl Refusal {
    /// A refusal of the body as a whole.
    pub(crate) fn body(detail: impl Into<String>) -> Refusal {
        Refusal {
            record: None,
            field: None,
            detail: detail.into(),
        }
    }

    /// A refusal of one field of one record.
    pub(crate) fn field(record: usize, field: &str, detail: impl Into<String>) -> Refusal {
        Refusal {
            record: Some(record),
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.record, &self.field) {
            (Some(r), Some(field)) => write!(f, "record {r}, field {field}: {}", self.detail),
            (Some(r), None) => write!(f, "record {r}: {}", self.detail),
            _ => f.write_str(&self.detail),
        }
    }
}

/// Decodes a body of `format`.
pub(crate) fn decode(format: Format, body: &[u8]) -> Result<Pack, Refusal> {
    match format {
        Format::Json => json(body),
        Format::Cbor => cbor(body),
        Format::Xml => xml(body),
    }
}

/// One field's value as the decoders see it, whatever the encoding.
enum Field<'a> {
    Text(&'a str),
    Number(f64),
    Integer(i128),
    Bool(bool),
    Bytes,
    Other,
}

/// Sets field `name` of `record` (index `index`) to `value`, checking its type. Unknown fields
/// are ignored, as RFC 8428 §4.4 says, except those ending in `_`, which a receiver must
/// understand or refuse.
fn set(record: &mut Record, index: usize, name: &str, value: Field<'_>) -> Result<(), Refusal> {
    let text = |v: Field<'_>| match v {
        Field::Text(t) => Ok(t.to_owned()),
        _ => Err(Refusal::field(index, name, "must be a string")),
    };
    let number = |v: Field<'_>| match v {
        Field::Number(x) if x.is_finite() => Ok(x),
        Field::Integer(i) => Ok(i as f64),
        Field::Number(_) => Err(Refusal::field(index, name, "must be a finite number")),
        _ => Err(Refusal::field(index, name, "must be a number")),
    };
    match name {
        "bn" => record.bn = Some(text(value)?),
        "bu" => record.bu = Some(text(value)?),
        "n" => record.n = Some(text(value)?),
        "u" => record.u = Some(text(value)?),
        "vs" => record.vs = Some(text(value)?),
        "bt" => record.bt = Some(number(value)?),
        "bv" => record.bv = Some(number(value)?),
        "bs" => record.bs = Some(number(value)?),
        "v" => record.v = Some(number(value)?),
        "s" => record.s = Some(number(value)?),
        "t" => record.t = Some(number(value)?),
        "ut" => record.ut = Some(number(value)?),
        "bver" => {
            record.bver = Some(match value {
                Field::Integer(i) => {
                    i64::try_from(i).map_err(|_| Refusal::field(index, name, "out of range"))?
                }
                Field::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => x as i64,
                _ => return Err(Refusal::field(index, name, "must be an integer")),
            })
        }
        "vb" => {
            record.vb = Some(match value {
                Field::Bool(b) => b,
                _ => return Err(Refusal::field(index, name, "must be true or false")),
            })
        }
        "vd" => {
            // Data values are refused later like every non-numeric value; their content does
            // not matter, only that the record holds one.
            record.vd = Some(match value {
                Field::Text(t) => t.to_owned(),
                Field::Bytes => String::new(),
                _ => return Err(Refusal::field(index, name, "must be binary data")),
            })
        }
        other if other.ends_with('_') => {
            return Err(Refusal::field(
                index,
                other,
                "a must-understand field (RFC 8428 §4.4) this receiver does not know",
            ))
        }
        _ => {}
    }
    Ok(())
}

fn json(body: &[u8]) -> Result<Pack, Refusal> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Refusal::body(format!("not JSON: {e}")))?;
    let serde_json::Value::Array(items) = value else {
        return Err(Refusal::body("a SenML pack is a JSON array of records"));
    };
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let serde_json::Value::Object(fields) = item else {
            return Err(Refusal {
                record: Some(index),
                field: None,
                detail: "a record is a JSON object".into(),
            });
        };
        let mut record = Record::default();
        for (name, value) in fields {
            let field = match value {
                serde_json::Value::String(s) => Field::Text(s),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Field::Integer(i128::from(i)),
                    None => n.as_f64().map_or(Field::Other, Field::Number),
                },
                serde_json::Value::Bool(b) => Field::Bool(*b),
                _ => Field::Other,
            };
            set(&mut record, index, name, field)?;
        }
        records.push(record);
    }
    Ok(Pack { records })
}

/// CBOR labels of RFC 8428 §6 (table 4).
fn cbor_label(label: i128) -> Option<&'static str> {
    Some(match label {
        -1 => "bver",
        -2 => "bn",
        -3 => "bt",
        -4 => "bu",
        -5 => "bv",
        -6 => "bs",
        0 => "n",
        1 => "u",
        2 => "v",
        3 => "vs",
        4 => "vb",
        5 => "s",
        6 => "t",
        7 => "ut",
        8 => "vd",
        _ => return None,
    })
}

fn cbor(body: &[u8]) -> Result<Pack, Refusal> {
    use ciborium::Value;
    let mut reader = Cursor::new(body);
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, CBOR_DEPTH)
        .map_err(|e| Refusal::body(format!("not CBOR: {e}")))?;
    if usize::try_from(reader.position()).ok() != Some(body.len()) {
        return Err(Refusal::body("bytes after the CBOR pack"));
    }
    let Value::Array(items) = value else {
        return Err(Refusal::body("a SenML pack is a CBOR array of records"));
    };
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Map(fields) = item else {
            return Err(Refusal {
                record: Some(index),
                field: None,
                detail: "a record is a CBOR map".into(),
            });
        };
        let mut record = Record::default();
        for (key, value) in fields {
            let name: String = match key {
                Value::Integer(i) => match cbor_label(i128::from(*i)) {
                    Some(name) => name.to_owned(),
                    // Unknown labels: negative ones are base fields a later version may add,
                    // and none of them is must-understand (that needs a text label ending in
                    // `_`): ignored, as unknown JSON fields are.
                    None => continue,
                },
                Value::Text(t) => t.clone(),
                _ => {
                    return Err(Refusal {
                        record: Some(index),
                        field: None,
                        detail: "a field label is an integer or a text string".into(),
                    })
                }
            };
            let field = match value {
                Value::Text(t) => Field::Text(t),
                Value::Integer(i) => Field::Integer(i128::from(*i)),
                Value::Float(x) => Field::Number(*x),
                Value::Bool(b) => Field::Bool(*b),
                Value::Bytes(_) => Field::Bytes,
                _ => Field::Other,
            };
            set(&mut record, index, &name, field)?;
        }
        records.push(record);
    }
    Ok(Pack { records })
}

fn xml(body: &[u8]) -> Result<Pack, Refusal> {
    let mut builder = TreeBuilder::new();
    let options = Options {
        max_token_length: body.len().max(64),
        ..Options::default()
    };
    let mut reader = RawReader::with_options(body, options);
    let root: Element = loop {
        match reader.read() {
            Ok(Some(event)) => builder
                .process_event(event)
                .map_err(|e| Refusal::body(format!("not XML: {e}")))?,
            Ok(None) => return Err(Refusal::body("not XML: the document ends too early")),
            Err(e) => return Err(Refusal::body(format!("not XML: {e}"))),
        }
        if builder.depth() > XML_DEPTH {
            return Err(Refusal::body(
                "a SenML pack is <sensml> holding <senml/> records, nothing deeper",
            ));
        }
        if let Some(root) = builder.root.take() {
            break root;
        }
    };
    Pack::try_from(&root).map_err(|e| match e {
        SenmlError::NotSensml => Refusal::body(e.to_string()),
        SenmlError::BadNumber { index, attr, value } => {
            Refusal::field(index, attr, format!("{value:?} is not a finite number"))
        }
        SenmlError::BadBool { index } => Refusal::field(index, "vb", "must be true or false"),
        SenmlError::NoName { index } => Refusal::field(index, "n", "no name"),
        SenmlError::SeveralValues { index } => {
            Refusal::field(index, "v", "more than one value (v, vs, vb, vd)")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::of_content_type("application/senml+json"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::of_content_type("Application/SenML+CBOR; charset=x"),
            Some(Format::Cbor)
        );
        assert_eq!(
            Format::of_content_type("application/senml+xml"),
            Some(Format::Xml)
        );
        for other in [
            "application/json",
            "text/plain",
            "",
            "application/senml-exi",
        ] {
            assert_eq!(Format::of_content_type(other), None, "{other}");
        }
    }

    #[test]
    fn json_fields_are_typed_and_indexed() {
        let pack =
            json(br#"[{"bn":"x_","bt":1.5e9,"bver":10,"n":"a","v":3},{"t":60,"v":4.5,"other":1}]"#)
                .unwrap();
        assert_eq!(pack.records[0].bt, Some(1.5e9));
        assert_eq!(pack.records[0].bver, Some(10));
        assert_eq!(pack.records[1].v, Some(4.5));
        let err = json(br#"[{"n":"a","v":1},{"n":"a","v":"1"}]"#).unwrap_err();
        assert_eq!((err.record, err.field.as_deref()), (Some(1), Some("v")));
        let err = json(br#"[{"n":"a","v":1,"x_":2}]"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("x_"));
        assert!(json(b"{}").unwrap_err().record.is_none());
        assert_eq!(json(b"[1]").unwrap_err().record, Some(0));
        assert!(json(b"[").is_err());
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert!(json(deep.as_bytes()).is_err());
    }

    #[test]
    fn cbor_labels_follow_rfc_8428() {
        use ciborium::Value;
        let pack = Value::Array(vec![Value::Map(vec![
            (Value::Integer((-2).into()), Value::Text("x_".into())),
            (Value::Integer((-3).into()), Value::Float(1.5e9)),
            (Value::Integer((-4).into()), Value::Text("W".into())),
            (Value::Integer(0.into()), Value::Text("a".into())),
            (Value::Integer(2.into()), Value::Integer(7.into())),
            (Value::Integer(99.into()), Value::Null),
        ])]);
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&pack, &mut bytes).unwrap();
        let decoded = cbor(&bytes).unwrap();
        let r = &decoded.records[0];
        assert_eq!(
            (r.bn.as_deref(), r.bt, r.bu.as_deref(), r.n.as_deref(), r.v),
            (Some("x_"), Some(1.5e9), Some("W"), Some("a"), Some(7.0))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(cbor(&trailing).is_err());
        let nan = Value::Array(vec![Value::Map(vec![(
            Value::Integer(2.into()),
            Value::Float(f64::NAN),
        )])]);
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&nan, &mut bytes).unwrap();
        let err = cbor(&bytes).unwrap_err();
        assert_eq!((err.record, err.field.as_deref()), (Some(0), Some("v")));
        // 10,000 nested arrays: refused by the depth limit, without overflowing the stack.
        let deep = [vec![0x81u8; 10_000], vec![0x01]].concat();
        assert!(cbor(&deep).is_err());
    }

    #[test]
    fn xml_is_bounded_in_depth() {
        let ns = "xmlns='urn:ietf:params:xml:ns:senml'";
        let pack = xml(
            format!("<sensml {ns}><senml bn='a' v='1'/><senml t='1' v='2'/></sensml>").as_bytes(),
        )
        .unwrap();
        assert_eq!(pack.records.len(), 2);
        let err =
            xml(format!("<sensml {ns}><senml bn='a' v='1'/><senml v='x'/></sensml>").as_bytes())
                .unwrap_err();
        assert_eq!((err.record, err.field.as_deref()), (Some(1), Some("v")));
        assert!(xml(format!("<sensml {ns}><senml><x/></senml></sensml>").as_bytes()).is_err());
        let deep = format!("<sensml {ns}>{}", "<a>".repeat(100_000));
        assert!(xml(deep.as_bytes()).is_err());
        assert!(xml(b"<other/>").is_err());
        assert!(xml(b"").is_err());
    }
}
