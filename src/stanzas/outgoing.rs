//! What the link's writer writes: a stanza as a tree, bytes already in wire format, or a
//! publication's template filled for one subscriber; with what the link reports once it is
//! written. Defined here, below both, so that delivery (which fills the writer's channel) and the
//! link (which drains it) share the type without importing each other.

use std::sync::Arc;

use minidom::Element;

use crate::stanzas::template::Template;

/// A stanza (or a publication's stanzas) for the writer. Those from the outbox or a fan-out
/// carry a [`Report`] so the link can say when they are written (and hand them back when the
/// link drops before writing them).
#[derive(Debug)]
pub struct Outgoing {
    pub payload: Payload,
    pub report: Option<Report>,
}

/// What is written.
#[derive(Debug)]
pub enum Payload {
    /// A tree the writer encodes.
    Tree(Element),
    /// A complete stanza, well-formed, within the size limit (built by the link itself).
    Wire(Vec<u8>),
    /// A publication's stanzas for one subscriber: the template shared by every subscriber of
    /// the publication, `to` escaped already, ids `p<subscription>.<seq>.<k>`.
    Fanout {
        template: Arc<Template>,
        to: Arc<str>,
        subscription: i64,
        seq: i64,
    },
}

impl Payload {
    /// Appends the bytes of a payload already in wire form (`Wire`, `Fanout`); false for a
    /// tree, which the writer encodes itself.
    pub fn append_wire(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Payload::Wire(bytes) => out.extend_from_slice(bytes),
            Payload::Fanout {
                template,
                to,
                subscription,
                seq,
            } => template.write_into(out, to, |out, k| fanout_id(out, *subscription, *seq, k)),
            Payload::Tree(_) => return false,
        }
        true
    }
}

/// What the link reports written (or hands back) for a stanza of the outbox or of a fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// An outbox entry, by id.
    Outbox(i64),
    /// A subscription's cursor may move to `seq`: what its claim `claim` sent up to there is
    /// written. `last`: the claim's last stanza for that subscription, whose report ends the
    /// claim on it.
    Fanout {
        subscription: i64,
        seq: i64,
        claim: i64,
        last: bool,
    },
}

/// The id of the `k`-th stanza of publication `seq` to `subscription`.
pub fn fanout_id(out: &mut Vec<u8>, subscription: i64, seq: i64, k: usize) {
    use std::io::Write as _;
    let _ = write!(out, "p{subscription}.{seq}.{k}");
}

/// The (subscription, seq, k) of a fan-out stanza id we gave, if it is one.
pub fn parse_fanout_id(id: &str) -> Option<(i64, i64, usize)> {
    let mut parts = id.strip_prefix('p')?.splitn(3, '.');
    let subscription = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    Some((subscription, seq, k))
}

impl From<Element> for Outgoing {
    fn from(stanza: Element) -> Self {
        Outgoing {
            payload: Payload::Tree(stanza),
            report: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_ids_read_back() {
        let mut out = Vec::new();
        fanout_id(&mut out, 12, 345, 2);
        let id = String::from_utf8(out).unwrap();
        assert_eq!(id, "p12.345.2");
        assert_eq!(parse_fanout_id(&id), Some((12, 345, 2)));
        for bad in ["q12", "p12.3", "p.1.2", "p1.2.x", "p1.2.3.4", "", "p-"] {
            assert_eq!(parse_fanout_id(bad), None, "{bad}");
        }
    }
}
