//! Builds the element tree of one stanza that [`super::framing`] already bounded in depth and
//! size.
//!
//! The tree is built by rxml's raw parser and minidom's tree builder, both iterative, with the
//! stream's namespace context given up front (a stanza inherits `jabber:component:accept` and
//! the `stream` prefix from the stream header). The token length limit is the stanza's own
//! length: a long name or attribute value is valid XML and must not be refused for its length.
//! Anything the parser refuses (an unbound prefix, a prefix bound to the XML namespace, broken
//! UTF-8) fails this stanza only.

use std::collections::BTreeMap;

use minidom::rxml::{Options, RawReader};
use minidom::tree_builder::TreeBuilder;
use minidom::Element;

use crate::stanzas::ns;

/// Parses one stanza as sent inside the component stream.
pub fn stanza(bytes: &[u8]) -> Result<Element, String> {
    match unalias_xml_prefix(bytes) {
        Some(rewritten) => tree(&rewritten),
        None => tree(bytes),
    }
}

fn tree(bytes: &[u8]) -> Result<Element, String> {
    let prefixes: BTreeMap<Option<String>, String> = BTreeMap::from([
        (None, ns::COMPONENT.to_owned()),
        (Some("stream".to_owned()), ns::STREAM.to_owned()),
    ]);
    let mut builder = TreeBuilder::new().with_prefixes_stack(vec![prefixes.into()]);
    let options = Options {
        max_token_length: bytes.len().max(64),
        ..Options::default()
    };
    let mut reader = RawReader::with_options(bytes, options);
    loop {
        match reader.read() {
            Ok(Some(event)) => builder.process_event(event).map_err(|e| e.to_string())?,
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
        if let Some(root) = builder.root.take() {
            return Ok(root);
        }
    }
    Err("incomplete element".into())
}

const XML_NAMESPACE: &[u8] = b"http://www.w3.org/XML/1998/namespace";

/// One attribute of a start tag, by byte positions.
struct Attribute {
    /// From the white space before it to its closing quote, excluded.
    start: usize,
    name: (usize, usize),
    value: (usize, usize),
}

/// Prosody forwards a client's `xml:foo='2'` as `xmlns:ns1='http://www.w3.org/XML/1998/namespace'
/// ns1:foo='2'`, a binding Namespaces in XML forbids and the parser refuses. Such stanzas are
/// valid as the user sent them, so they are read as if the prefix were `xml` itself: the
/// declarations are dropped and the aliased attributes renamed. `None` when nothing needs it.
fn unalias_xml_prefix(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes
        .windows(XML_NAMESPACE.len())
        .any(|w| w == XML_NAMESPACE)
    {
        return None;
    }
    let attributes = attributes(bytes);
    let text = |(a, b): (usize, usize)| bytes.get(a..b).unwrap_or_default();
    let aliases: Vec<&[u8]> = attributes
        .iter()
        .filter(|a| text(a.value) == XML_NAMESPACE)
        .filter_map(|a| text(a.name).strip_prefix(b"xmlns:"))
        .filter(|prefix| *prefix != b"xml")
        .collect();
    if aliases.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut copied = 0;
    for a in &attributes {
        let name = text(a.name);
        let declares_alias = name
            .strip_prefix(b"xmlns:")
            .is_some_and(|p| aliases.contains(&p));
        let local = name
            .iter()
            .position(|&b| b == b':')
            .filter(|&colon| aliases.contains(&name.get(..colon).unwrap_or_default()))
            .and_then(|colon| name.get(colon + 1..));
        if declares_alias {
            out.extend_from_slice(bytes.get(copied..a.start)?);
            copied = a.value.1 + 1;
        } else if let Some(local) = local {
            out.extend_from_slice(bytes.get(copied..a.name.0)?);
            out.extend_from_slice(b"xml:");
            out.extend_from_slice(local);
            copied = a.name.1;
        }
    }
    out.extend_from_slice(bytes.get(copied..)?);
    Some(out)
}

/// Every attribute of every start tag of `bytes`, skipping end tags, comments, CDATA and
/// processing instructions. Stops at the first thing that is not markup as expected.
fn attributes(bytes: &[u8]) -> Vec<Attribute> {
    let mut found = Vec::new();
    let mut i = 0;
    let at = |i: usize| bytes.get(i).copied();
    let find = |from: usize, needle: &[u8]| {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
            .map(|p| from + p + needle.len())
    };
    while let Some(lt) = bytes
        .get(i..)
        .and_then(|r| r.iter().position(|&b| b == b'<'))
    {
        i += lt + 1;
        let skip_to = match at(i) {
            Some(b'/') => find(i, b">"),
            Some(b'!') if bytes.get(i..i + 8) == Some(b"![CDATA[") => find(i, b"]]>"),
            Some(b'!') if bytes.get(i..i + 3) == Some(b"!--") => find(i, b"-->"),
            Some(b'!') => find(i, b">"),
            Some(b'?') => find(i, b"?>"),
            Some(_) => None,
            None => break,
        };
        if matches!(at(i), Some(b'/' | b'!' | b'?')) {
            match skip_to {
                Some(next) => {
                    i = next;
                    continue;
                }
                None => break,
            }
        }
        // A start tag: its name, then attributes until `>` or `/>`.
        while at(i).is_some_and(|b| !b.is_ascii_whitespace() && b != b'>' && b != b'/') {
            i += 1;
        }
        loop {
            let start = i;
            while at(i).is_some_and(|b| b.is_ascii_whitespace()) {
                i += 1;
            }
            match at(i) {
                Some(b'>') => {
                    i += 1;
                    break;
                }
                Some(b'/') => {
                    i += 1;
                    continue;
                }
                None => return found,
                Some(_) => {}
            }
            let name_start = i;
            while at(i).is_some_and(|b| !b.is_ascii_whitespace() && b != b'=' && b != b'>') {
                i += 1;
            }
            let name_end = i;
            while at(i).is_some_and(|b| b.is_ascii_whitespace() || b == b'=') {
                i += 1;
            }
            let Some(quote @ (b'"' | b'\'')) = at(i) else {
                return found;
            };
            let value_start = i + 1;
            let Some(len) = bytes
                .get(value_start..)
                .and_then(|r| r.iter().position(|&b| b == quote))
            else {
                return found;
            };
            i = value_start + len + 1;
            found.push(Attribute {
                start,
                name: (name_start, name_end),
                value: (value_start, value_start + len),
            });
        }
    }
    found
}

/// The addressing of a stanza read from its opening tag alone, without namespace processing:
/// enough to answer a stanza that could not be read (too deep, too large, not namespace-valid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// The element name as written (`iq`, `message`, `presence`, or a prefixed name).
    pub(crate) name: String,
    pub(crate) type_: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

/// The opening tag of `bytes` (`<iq … >` or `<iq … />`), quotes respected.
pub fn opening_tag(bytes: &[u8]) -> Option<&[u8]> {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return bytes.get(..=i),
            (None, _) => {}
        }
    }
    None
}

/// Reads name, `type`, `id`, `from` and `to` from an opening tag, leniently: whatever else the
/// tag holds (undeclared prefixes, reserved namespaces, huge attributes) is skipped.
pub fn addressing(tag: &[u8]) -> Option<Addressing> {
    let text = std::str::from_utf8(tag).ok()?;
    let inner = text.strip_prefix('<')?;
    let inner = inner.strip_suffix('>')?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let name_end = inner
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(inner.len());
    let mut found = Addressing {
        name: inner.get(..name_end)?.to_owned(),
        ..Addressing::default()
    };
    let mut rest = inner.get(name_end..)?;
    loop {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = rest.get(..eq)?.trim_end();
        let after = rest.get(eq + 1..)?.trim_start();
        let quote = after.chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let value_end = after.get(1..)?.find(quote)? + 1;
        let value = unescape(after.get(1..value_end)?);
        match key {
            "type" => found.type_ = Some(value),
            "id" => found.id = Some(value),
            "from" => found.from = Some(value),
            "to" => found.to = Some(value),
            _ => {}
        }
        rest = after.get(value_end + 1..)?;
    }
    Some(found)
}

/// Replaces the predefined and numeric character references; others are left as written.
fn unescape(value: &str) -> String {
    if !value.contains('&') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';') else { break };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=semi]),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_inherit_the_stream_namespaces() {
        let el = stanza(b"<iq type='get' id='1' from='a@b/c' to='quoalise.localhost'><ping xmlns='urn:xmpp:ping'/></iq>").unwrap();
        assert!(el.is("iq", ns::COMPONENT));
        assert_eq!(el.attr("id"), Some("1"));
        assert!(el.get_child("ping", "urn:xmpp:ping").is_some());
        let err = stanza(
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        )
        .unwrap();
        assert!(err.is("error", ns::STREAM));
    }

    #[test]
    fn long_names_and_values_are_valid_xml() {
        let node = "n".repeat(200 * 1024);
        let name = "e".repeat(9 * 1024);
        let text = format!(
            "<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/><{name} {name}='v'/></iq>"
        );
        let el = stanza(text.as_bytes()).unwrap();
        let query = el.children().next().unwrap();
        assert_eq!(query.attr("node").map(str::len), Some(node.len()));
        assert_eq!(el.children().nth(1).unwrap().name(), name);
    }

    #[test]
    fn xml_attributes_are_accepted() {
        let el =
            stanza(b"<iq xml:foo='2' xml:lang='fr' id='1'><query xmlns='q' xml:bar='3'/></iq>")
                .unwrap();
        assert_eq!(el.attr("id"), Some("1"));
    }

    #[test]
    fn prosodys_aliases_of_the_xml_prefix_are_read_as_xml() {
        let text = b"<iq type='get' id='1' xmlns:ns1='http://www.w3.org/XML/1998/namespace' ns1:foo='2'><ping xmlns='urn:xmpp:ping' xmlns:ns2=\"http://www.w3.org/XML/1998/namespace\" ns2:bar='a&gt;b'/><x><![CDATA[ ns1:x='y' ]]></x></iq>";
        let rewritten = unalias_xml_prefix(text).unwrap();
        assert_eq!(
            String::from_utf8(rewritten).unwrap(),
            "<iq type='get' id='1' xml:foo='2'><ping xmlns='urn:xmpp:ping' xml:bar='a&gt;b'/><x><![CDATA[ ns1:x='y' ]]></x></iq>"
        );
        let el = stanza(text).unwrap();
        assert_eq!(
            el.attr_ns("http://www.w3.org/XML/1998/namespace", "foo"),
            Some("2")
        );
        let ping = el.children().next().unwrap();
        assert_eq!(
            ping.attr_ns("http://www.w3.org/XML/1998/namespace", "bar"),
            Some("a>b")
        );
        // The namespace as a value, or bound to `xml` itself, needs nothing.
        assert!(unalias_xml_prefix(b"<iq a='http://www.w3.org/XML/1998/namespace'/>").is_none());
        assert!(unalias_xml_prefix(
            b"<iq xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='fr'/>"
        )
        .is_none());
    }

    #[test]
    fn namespace_errors_fail_the_stanza_only() {
        assert!(stanza(b"<iq xmlns:xml='urn:not-the-xml-namespace' xml:a='1'/>").is_err());
        assert!(stanza(b"<iq><x:y/></iq>").is_err());
        assert!(stanza(b"<iq a='\xff'/>").is_err());
        assert!(stanza(b"<iq>").is_err());
    }

    #[test]
    fn addressing_is_read_from_any_opening_tag() {
        let tag = opening_tag(b"<iq type='get' id='d&amp;1' from=\"bob@localhost/r&#x27;\" to='quoalise.localhost' xmlns:foo='http://www.w3.org/XML/1998/namespace' foo:a='>'><a/></iq>").unwrap();
        assert!(tag.ends_with(b"foo:a='>'>"));
        let a = addressing(tag).unwrap();
        assert_eq!(a.name, "iq");
        assert_eq!(a.type_.as_deref(), Some("get"));
        assert_eq!(a.id.as_deref(), Some("d&1"));
        assert_eq!(a.from.as_deref(), Some("bob@localhost/r'"));
        assert_eq!(a.to.as_deref(), Some("quoalise.localhost"));
        let p = addressing(b"<presence/>").unwrap();
        assert_eq!((p.name.as_str(), p.id), ("presence", None));
        assert!(addressing(b"<iq id=x>").is_none());
        assert!(opening_tag(b"<iq id='>").is_none());
    }
}
