//! What the link's writer writes: a stanza as a tree, or bytes already in wire format, with the
//! outbox entry it comes from. Defined here, below both, so that delivery (which fills the
//! writer's channel) and the link (which drains it) share the type without importing each other.

use minidom::Element;

/// A stanza for the writer. Stanzas from the outbox carry their id so the link can report when
/// they are written (and hand them back when the link drops before writing them).
#[derive(Debug)]
pub struct Outgoing {
    pub payload: Payload,
    pub outbox_id: Option<i64>,
}

/// What is written: a tree the writer encodes, or bytes already on the wire format.
#[derive(Debug)]
pub enum Payload {
    Tree(Element),
    /// A complete stanza, well-formed, within the size limit (built by the link itself).
    Wire(Vec<u8>),
}

impl From<Element> for Outgoing {
    fn from(stanza: Element) -> Self {
        Outgoing {
            payload: Payload::Tree(stanza),
            outbox_id: None,
        }
    }
}
